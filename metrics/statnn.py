"""StatNN — per-layer weight statistics with a trained head (Unterthiner et al. 2020, "Predicting
Neural Network Accuracy from Weights").

What follows the paper: each layer's weights and biases are summarised by their mean, variance
and the quantiles 0, 0.25, 0.5, 0.75 and 1 (nfn's ``StatFeaturizer`` computes exactly these), and a
model is the concatenation over layers; the statistics do not depend on filter order.

Our choices: the paper trains gradient boosting or an MLP to predict accuracy; here the target is
the task, so the statistics feed the task-embedding head shared with LPS (``metrics.training``:
standardise, dropout 0.1, linear 64-d embedding, cosine classifier over the training tasks, Adam,
full batch), whose embedding retrieval compares by cosine. On digits500 it retrieves about as
well as the untrained statistics of ``weight-stats`` and identifies tasks little better than
chance: weight statistics say little about which classes a model tells apart (the board has the
figures). Gradient boosting over the same statistics (scikit-learn's
HistGradientBoostingClassifier, 100 iterations), with its class probabilities over the training
tasks as the embedding, retrieved worse when tried.
The numeric properties in ``predicts`` (test accuracy, gap, epoch) it predicts directly, as NFN's
StatNN baseline does: an MLP (two hidden layers of 256) on the same statistics, trained with mean
squared error on the standardised target (``metrics.training.fit_regressor``).
"""

from __future__ import annotations

import torch
from sklearn.utils.validation import check_is_fitted

from .cache import per_view
from .methods import HIDDEN_UNITS, SimilarityMethod
from .properties import is_numeric
from .training import Identity, fit_regressor, fit_task_embedding, regress, transform


@per_view
@torch.no_grad()
def layer_statistics(view) -> torch.Tensor:
    """(n, 14 * layers) mean, variance and 5 quantiles of every layer's weights and biases."""
    from nfn.common import WeightSpaceFeatures
    from nfn.layers import StatFeaturizer

    names = set(view.layout["name"])
    weights, biases = [], []
    for w in view.weight_names():
        weights.append(torch.from_numpy(view.tensor(w)).float().flatten(1)[:, None])
        b = w[: -len("weight")] + "bias"
        biases.append(torch.from_numpy(view.tensor(b)).float()[:, None] if b in names else torch.zeros(len(view), 1, 1))
    return StatFeaturizer()(WeightSpaceFeatures(weights, biases)).flatten(1)


class StatNN(SimilarityMethod):
    """Per-layer mean, variance and quantiles with the task-embedding head; see the module docstring."""

    invariances = (HIDDEN_UNITS,)

    def __init__(
        self,
        seed: int = 0,
        epochs: int = 300,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        predicts: tuple[str, ...] = ("test_acc", "gap", "epoch"),
        regression_epochs: int = 500,
    ):
        self.seed, self.epochs, self.lr, self.weight_decay = seed, epochs, lr, weight_decay
        self.predicts, self.regression_epochs = predicts, regression_epochs

    def fit(self, view):
        x = layer_statistics(view)
        # Numeric properties predicted directly, as NFN trains StatNN: an MLP on the statistics.
        self.regressors_ = {
            t: fit_regressor(lambda: Identity(x.shape[1]), x, y, self.seed, self.regression_epochs)
            for t, y in (view.targets or {}).items()
            if t in self.predicts and is_numeric(y)
        }
        self.net_, self.classes_ = fit_task_embedding(
            lambda: Identity(x.shape[1]),
            x,
            view.labels,
            self.seed,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
        return self

    def _run(self, view):
        check_is_fitted(self)
        return transform(self.net_, layer_statistics(view))

    def embed(self, view):
        return self._run(view)[0]

    def predict_scores(self, view):
        return self._run(view)[1]

    def predict_property(self, view, target):
        check_is_fitted(self)
        fitted = self.regressors_.get(target)
        return None if fitted is None else regress(fitted, layer_statistics(view))
