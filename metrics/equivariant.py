"""NFN — neural functional networks (Zhou et al. 2023, "Permutation Equivariant Neural
Functionals"), on the ``nfn`` package, with the task-embedding head of LPS.

What follows the paper (and the package): a model's weights and biases are one
``WeightSpaceFeatures`` (a channel axis, then each layer's (out, in[, k, k]) weight and (out,)
bias); ``HNPLinear`` layers, equivariant to permuting every hidden layer's units (HNP: the input
and output axes keep their order), alternate with ReLU (``TupleOp``); ``HNPPool`` pools into an
invariant vector that keeps the first layer's input columns and the last layer's output rows.
A conv stack ending in global average pooling and a linear head has the same hidden symmetry as
an MLP (GAP commutes with permuting channels), so the last conv's channels are the head's inputs.

Our choices: HNP rather than NP, since the head's rows are in class order (a task's labels are
ordered), which NP would throw away. A conv kernel's k x k positions enter as k*k input channels
of an (out, in) weight, zero-padded for the head and the biases: equivariance is the same, but
nfn's trailing-dims form multiplies every layer's output channels by k*k, which made a training
step several times slower, too slow for a fit of a few seconds. One HNP layer of 8 channels (two
layers, or 4 channels, scored no better on digits500, at up to twice the time).
Every tensor is divided by its standard deviation over the training models (one scalar per
tensor, so equivariance is kept); the pooled vector feeds the shared task-embedding head
(``metrics.training``: standardise, dropout, linear 64-d, cosine classifier, Adam, full batch),
trained end to end with the NFN layers, 100 epochs at lr 0.01. The NFN fits its training models
perfectly and generalises little, so it is regularised hard: dropout 0.5 and weight decay 0.1
(markedly better on digits500 than LPS's 0.1 and 1e-2). It stays below LPS on digits500 and on
fashion-mnist500 (``benchmarks/learners.py``; benchmarks/RESULTS.md has the figures): one
equivariant layer cannot form the products across layers that make a network's function, which
is where the task lives.

Test accuracy (``predicts``) it predicts directly, as NFN does: the same encoder with an MLP
regression head (``metrics.training.fit_regressor``), trained end to end with mean squared error
on the standardised accuracy, 150 full-batch epochs at lr 3e-3.

Every family works through the archive's effective weights (STR, DGConv and ACDC views already
hold effective conv weights). An architecture whose layers are not a chain of conv/linear layers
with biases (e.g. BatchNorm layers, which nfn does not represent) is refused with one line.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .cache import per_view
from .lps import layer_tensors
from .methods import HIDDEN_UNITS, SimilarityMethod
from .properties import is_numeric
from .training import fit_regressor, fit_task_embedding, regress, transform


@per_view
def weight_space(view) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Every layer's weight (n, k*k, out, in) and bias (n, k*k, out), in layer order: a conv
    kernel's positions are channels, zero-padded for the linear head and the biases. A
    ModelsetError naming the architecture if nfn's layers cannot represent it."""
    weights, biases = layer_tensors(view, "nfn")
    n, k = len(view), int(np.prod(weights[0].shape[3:]))
    pad = lambda t: torch.cat([t, t.new_zeros(n, k - t.shape[1], *t.shape[2:])], dim=1)
    return (
        tuple(pad(w.flatten(3).permute(0, 3, 1, 2) if w.ndim == 5 else w[:, None]) for w in weights),
        tuple(pad(b[:, None]) for b in biases),
    )


class HNPEncoder(nn.Module):
    """``layers`` times (HNPLinear -> ReLU), then HNPPool, flattened; inputs scaled per tensor."""

    def __init__(self, spec, scales, in_channels: int, channels: int = 8, layers: int = 1):
        super().__init__()
        from nfn.layers import HNPLinear, HNPPool, TupleOp

        self.scales = scales  # (weight scales, bias scales), fixed from the training models
        blocks, c_in = [], in_channels
        for _ in range(layers):
            blocks += [HNPLinear(spec, c_in, channels), TupleOp(nn.ReLU())]
            c_in = channels
        self.body = nn.Sequential(*blocks, HNPPool(spec), nn.Flatten())
        self.n_features = channels * HNPPool.get_num_outs(spec)

    def forward(self, x):
        from nfn.common import WeightSpaceFeatures

        (weights, biases), (ws, bs) = x, self.scales
        return self.body(WeightSpaceFeatures([w / s for w, s in zip(weights, ws)], [b / s for b, s in zip(biases, bs)]))


class NFN(SimilarityMethod):
    """HNP neural functional (nfn package) with the task-embedding head; see the module docstring."""

    invariances = (HIDDEN_UNITS,)

    def __init__(
        self,
        seed: int = 0,
        channels: int = 8,
        layers: int = 1,
        epochs: int = 100,
        lr: float = 1e-2,
        dropout: float = 0.5,
        weight_decay: float = 0.1,
        predicts: tuple[str, ...] = ("test_acc",),
        regression_epochs: int = 150,
        regression_lr: float = 3e-3,
    ):
        self.seed, self.channels, self.layers = seed, channels, layers
        self.epochs, self.lr, self.dropout, self.weight_decay = epochs, lr, dropout, weight_decay
        self.predicts, self.regression_epochs, self.regression_lr = predicts, regression_epochs, regression_lr

    def fit(self, view):
        from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat

        x = weight_space(view)
        spec = network_spec_from_wsfeat(WeightSpaceFeatures(*x))
        scales = tuple(tuple(t.std().clamp_min(1e-8) for t in part) for part in x)
        self.net_, self.classes_ = fit_task_embedding(
            lambda: HNPEncoder(spec, scales, x[0][0].shape[1], self.channels, self.layers),
            x,
            view.labels,
            self.seed,
            epochs=self.epochs,
            lr=self.lr,
            dropout=self.dropout,
            weight_decay=self.weight_decay,
        )
        # Numeric properties in ``predicts`` directly: the HNP encoder with a regression head.
        self.regressors_ = {
            t: fit_regressor(
                lambda: HNPEncoder(spec, scales, x[0][0].shape[1], self.channels, self.layers),
                x,
                y,
                self.seed,
                self.regression_epochs,
                self.regression_lr,
            )
            for t, y in (view.targets or {}).items()
            if t in self.predicts and is_numeric(y)
        }
        return self

    def predict_property(self, view, target):
        check_is_fitted(self)
        fitted = self.regressors_.get(target)
        return None if fitted is None else regress(fitted, weight_space(view))

    def _run(self, view):
        check_is_fitted(self)
        return transform(self.net_, weight_space(view))

    def embed(self, view):
        return self._run(view)[0]

    def predict_scores(self, view):
        return self._run(view)[1]
