"""Baseline similarity methods: weight-space (raw, statistics, unlearned Gram, a learned
first-order net) and functional references that run the models on a fixed probe batch."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.utils.validation import check_is_fitted

from .cache import per_view
from .lps import chained_gram, layer_tensors
from .methods import HIDDEN_UNITS, SimilarityMethod
from .training import Identity, fit_task_embedding, permute_hidden, transform

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _trainable(view) -> np.ndarray:
    cols = np.concatenate([np.arange(r.offset, r.offset + r.size) for r in view.layout.itertuples() if r.trainable])
    return view.params[:, cols]


class RawCosine(SimilarityMethod):
    """Cosine between flattened parameter vectors: no alignment at all."""

    def embed(self, view):
        return _trainable(view)


class RawEuclidean(SimilarityMethod):
    """Negative Euclidean distance between flattened parameter vectors."""

    def similarity(self, view):
        x = _trainable(view).astype(np.float64)
        return -euclidean_distances(x)  # through a matrix product: scipy's cdist took minutes on 3,000 models


@per_view
def weight_statistics(view) -> np.ndarray:
    """(n, 7 * tensors) mean, std and quantiles of every trainable tensor (filter order does not matter)."""
    cols = []
    for r in view.layout.itertuples():
        if r.trainable:
            w = view.params[:, r.offset : r.offset + r.size].astype(np.float64)
            cols += [w.mean(1), w.std(1), *np.quantile(w, QUANTILES, axis=1)]
    return np.stack(cols, axis=1)


class WeightStats(SimilarityMethod):
    """Per-tensor mean, std and quantiles (the Small CNN Zoo features), standardised by the
    training models', then cosine."""

    invariances = (HIDDEN_UNITS,)

    def fit(self, view):
        f = weight_statistics(view)
        self.mean_, self.std_ = f.mean(0), f.std(0) + 1e-12
        return self

    def embed(self, view):
        check_is_fitted(self)
        return (weight_statistics(view) - self.mean_) / self.std_


class ChainedGram(SimilarityMethod):
    """LPS's chained second-order statistics with no learning: centred on the training models, then cosine."""

    invariances = (HIDDEN_UNITS,)

    def fit(self, view):
        self.mean_ = chained_gram(view).mean(0)
        return self

    def embed(self, view):
        check_is_fitted(self)
        return chained_gram(view) - self.mean_


class FirstOrderNet(SimilarityMethod):
    """The "no alignment" learned baseline: flattened weights -> linear embedding, trained with
    cross-entropy over the training tasks like LPS's head. ``permutations = True`` trains it on
    every model with its hidden units in a new random order each epoch (it retrieves markedly better
    on digits500: ``benchmarks/learners.py``; off by default, so the baseline stays unaligned)."""

    def __init__(
        self, seed: int = 0, permutations: bool = False, epochs: int = 100, lr: float = 3e-3, weight_decay: float = 1e-3
    ):
        self.seed, self.permutations = seed, permutations
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay

    def fit(self, view):
        x, augment = self._features(view), None
        if self.permutations:
            layers = layer_tensors(view, "first-order")
            augment = lambda x, gen: _flat(*permute_hidden(*layers, gen))
        # 100 full-batch epochs at lr 3e-3 scored as 300 at 1e-3 on digits500, in a third of the time
        self.net_, self.classes_ = fit_task_embedding(
            lambda: Identity(x.shape[1]),
            x,
            view.labels,
            self.seed,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            augment=augment,
        )
        return self

    def _features(self, view):  # the layers' tensors in order, where they are permuted in training
        return _layer_vector(view) if self.permutations else _trainable_tensor(view)

    def embed(self, view):
        check_is_fitted(self)
        return transform(self.net_, self._features(view))[0]

    def predict_scores(self, view):
        check_is_fitted(self)
        return transform(self.net_, self._features(view))[1]


def _flat(weights, biases):
    return torch.cat([t.flatten(1) for pair in zip(weights, biases) for t in pair], dim=1)


@per_view
def _layer_vector(view):
    return _flat(*layer_tensors(view, "first-order"))


@per_view
def _trainable_tensor(view):
    return torch.from_numpy(_trainable(view))


@torch.no_grad()
def _run(view):
    """(penultimate features, softmax outputs) of every model on the probe batch."""
    x = torch.from_numpy(view.probe)
    feats, outs = [], []
    for net in view.modules():
        heads = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        captured = []
        hook = heads[-1].register_forward_hook(lambda m, inp, out, c=captured: c.append(inp[0]))
        outs.append(torch.softmax(net(x), dim=1).reshape(-1).numpy())
        hook.remove()
        feats.append(captured[0].numpy())
    return np.stack(feats), np.stack(outs)


class LinearCKA(SimilarityMethod):
    """Linear CKA between the models' penultimate activations on the probe batch (runs the models)."""

    invariances = (HIDDEN_UNITS,)

    def similarity(self, view):
        feats = torch.from_numpy(_run(view)[0]).double()  # (n, m, d)
        feats = feats - feats.mean(dim=1, keepdim=True)
        grams = feats @ feats.transpose(1, 2)  # centred (m x m) Gram of each model
        flat = grams.reshape(len(view), -1)
        flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (flat @ flat.T).numpy()


class OutputAgreement(SimilarityMethod):
    """Cosine of the models' softmax outputs on the probe batch: the functional reference."""

    invariances = (HIDDEN_UNITS,)

    def embed(self, view):
        return _run(view)[1]
