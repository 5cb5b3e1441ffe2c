"""The fixed simple probes that score a method's representation on the property protocols.

A method that does not predict a property itself (``predict_property``) is scored, as in Model Zoos,
by a probe fitted here, on the scoring side, on its training rows and their public targets:
- an embedding: standardised on the training rows, then ridge regression (its penalty chosen by
  leave-one-out on the training rows) for a number, or multinomial logistic regression (C = 1) for
  a category;
- a similarity only: the 10 most similar training rows, their mean or their majority.
The probe is the same for every method, so the scores compare representations.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

NEIGHBOURS = 10
ALPHAS = np.logspace(-2, 4, 13)  # ridge's penalty, chosen by efficient leave-one-out on the training rows


def embedding_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "classification" and len(np.unique(train_y)) < 2:
        return np.full(len(test_x), train_y[0])
    model = RidgeCV(alphas=ALPHAS) if kind == "regression" else LogisticRegression(C=1.0, max_iter=2000)
    return make_pipeline(StandardScaler(), model).fit(train_x, train_y).predict(test_x)


def similarity_probe(sim_test_train: np.ndarray, train_y: np.ndarray, kind: str) -> np.ndarray:
    """(n_test,) predictions from a test x train similarity block."""
    k = min(NEIGHBOURS, sim_test_train.shape[1])
    nearest = np.argsort(-sim_test_train, axis=1, kind="stable")[:, :k]
    votes = train_y[nearest]
    if kind == "regression":
        return votes.mean(1)
    # majority, ties to the smallest code: repeatable
    return np.array([np.bincount(v).argmax() for v in votes.astype(np.int64)])
