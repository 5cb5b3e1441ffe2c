"""Property predictors: built-ins that predict a model's properties from its weights themselves
(``predict_property``), the baselines of the accuracy-prediction literature.

- ``stats-gbm`` (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights"): the
  mean, standard deviation and the 0/25/50/75/100 percentiles of every weight and bias tensor
  (``baselines.weight_statistics``) into gradient boosting. The paper used LightGBM; here
  scikit-learn's HistGradientBoostingRegressor (a classifier for categorical targets).
- ``stats-linear``: the same features, standardised, into a linear model (ridge, its penalty by
  leave-one-out; logistic regression for categorical targets), the paper's linear baseline.

Each fits one model per target of its training view (test accuracy, generalisation gap, epoch,
every swept hyper-parameter, family) and embeds a model by its standardised statistics (as
``weight-stats``), so the task-relation protocols score it too. The statistics do not depend on
the order of hidden units. StatNN and NFN (``metrics.statnn``, ``metrics.equivariant``) predict
numeric properties directly as well.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from .baselines import weight_statistics
from .methods import HIDDEN_UNITS, SimilarityMethod


def is_numeric(values: np.ndarray) -> bool:
    """A target to regress (floats: accuracy, gap, epoch), not class codes (integers)."""
    return np.asarray(values).dtype.kind == "f"


class _StatsPredictor(SimilarityMethod):
    """Per-tensor statistics, one fitted model per target; ``_model(numeric)`` says which."""

    invariances = (HIDDEN_UNITS,)

    def fit(self, view):
        x = weight_statistics(view)
        self.mean_, self.std_ = x.mean(0), x.std(0) + 1e-12
        self.models_ = {}
        for target, y in (view.targets or {}).items():
            y = np.asarray(y)
            if not is_numeric(y) and len(np.unique(y)) < 2:
                self.models_[target] = int(y[0])  # one class seen: predicted for every model
            else:
                self.models_[target] = self._model(is_numeric(y)).fit(x, y)
        return self

    def embed(self, view):
        check_is_fitted(self)
        return (weight_statistics(view) - self.mean_) / self.std_

    def predict_property(self, view, target):
        check_is_fitted(self)
        model = self.models_.get(target)
        if model is None:
            return None
        if isinstance(model, int):
            return np.full(len(view), model, np.int64)
        return model.predict(weight_statistics(view))

    def _model(self, numeric: bool):
        raise NotImplementedError


class StatsGBM(_StatsPredictor):
    """Per-tensor statistics into gradient boosting (HistGradientBoosting); see the module docstring."""

    def __init__(
        self,
        seed: int = 0,
        max_iter: int = 500,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
    ):
        self.seed, self.max_iter, self.learning_rate = seed, max_iter, learning_rate
        self.max_leaf_nodes, self.min_samples_leaf = max_leaf_nodes, min_samples_leaf

    def _model(self, numeric: bool):
        cls = HistGradientBoostingRegressor if numeric else HistGradientBoostingClassifier
        return cls(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.seed,
        )


class StatsLinear(_StatsPredictor):
    """Per-tensor statistics, standardised, into a linear model; see the module docstring."""

    def _model(self, numeric: bool):
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)) if numeric else LogisticRegression(C=1.0, max_iter=2000)
        return make_pipeline(StandardScaler(), model)
