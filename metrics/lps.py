"""LPS — Learnable Parameter Similarity (Wang et al., 2019), with its second-order layers
learnable and trained end to end with the task loss; and its first-order sibling, learned probes.

The paper's words, point by point, and what ``LPS`` does with them:

- "a second-order neural network to align high-dimensional model parameters": the paper reads a
  model through Gram statistics of its weights, chained layer to layer so that filter order
  cancels (``LPSFixed``, BUILTIN ``lps-fixed``, keeps exactly that, fixed, as the ablation).
  *We make the second-order layer learnable*: ``ProbeChain`` runs r learnable inputs X (r x C x s
  x s, here 8 of 4 x 4) through the model's own convolutions, activations, global average pooling
  and head, and takes the trace-normalised r x r Gram of the outputs. For a linear chain M_L this
  Gram is X^T (M_L^T M_L) X: the paper's last chained Gram seen through a learned projection;
  with the model's nonlinearities and biases in the chain it is the same statistic of the network
  as it computes. Permuting a layer's filters (with the next layer's inputs, and the head's through
  GAP) leaves the model's function, and so every response, unchanged: invariant to filter order by
  construction, and aligned across models because every model answers the same inputs.
- learning "second-order similarity in an end-to-end way": *we follow this*: the learnable inputs
  are trained by backpropagation through the models, in one loss with the head. Beside the Gram we
  keep the class-by-input map (the outputs themselves, rows in class order, L2-normalised), as the
  fixed version keeps the chain's class map.
- "trained with cross-entropy over the training tasks; models compared by cosine at test time":
  *we follow this* (``metrics.training``): standardised features -> dropout 0.1 -> linear 64-d
  embedding, L2-normalised, a cosine classifier (scale 16) over the training tasks; Adam (lr
  0.01), full batch, 100 epochs, weight decay 1e-2.

What each piece adds is measured on digits500 by ``benchmarks/learners.py`` (retrieval mAP over 5
seeds; its figures are in benchmarks/RESULTS.md): the fixed chain, learned inputs with the Grams of
every layer, with the Gram of the outputs (``LPS``), and with no Gram at all, the class-by-input map
alone. The second-order pooling costs accuracy there, so the best weight-only method is that
first-order readout, ``LearnedProbes`` (BUILTIN ``learned-probes``): the same learned inputs and
head, named for what it is rather than as the paper's method. A learnable projection of the fixed
chain's input side (ReLU and biases in the chain, Grams of the result) scored barely above the fixed
chain while choosing, and was not kept.

Our further choices, chosen on digits500 without Grams: inputs of 4 x 4 pixels (8 x 8 scored a
little higher at twice the time, 2 x 2 much lower), and for strided architectures as many times
larger as their total stride (32 x 32 for ``small_cnn_zoo``), so that the last feature map is 4 x 4
there too; r = 8 inputs (4 lower; 16 about the same at 4x the time); the models run as the groups of
grouped convolutions, all at once. Neither method needs data: the inputs are parameters of the
method, learned from the training models' weights and task labels alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from modelset.archs import ACTIVATIONS
from modelset.errors import ModelsetError

from .cache import per_view
from .methods import HIDDEN_UNITS, SimilarityMethod
from .training import Identity, fit_task_embedding, transform


@per_view
def chained_gram(view, with_class_map: bool = False) -> np.ndarray:
    """(n, F) trace-normalised chained Gram features of every model in the view, optionally
    followed by the normalised class-by-input map of the whole chain."""
    chain = None
    feats = []
    for name in view.weight_names():
        w = torch.from_numpy(view.tensor(name)).double()
        if chain is None:
            chain = w.reshape(len(view), w.shape[1], -1)  # (n, out, in*k*k)
        else:
            s = w.sum(dim=(-2, -1)) if w.ndim == 5 else w  # (n, out, in)
            chain = s @ chain
        g = chain.transpose(1, 2) @ chain  # (n, d0, d0)
        g = g / g.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)[:, None, None]
        iu = torch.triu_indices(g.shape[1], g.shape[2])
        feats.append(g[:, iu[0], iu[1]])
    if with_class_map:
        feats.append(F.normalize(chain.flatten(1), dim=1))
    return torch.cat(feats, dim=1).float().numpy()


def _triu(g):
    iu = torch.triu_indices(g.shape[-2], g.shape[-1])
    return g[:, iu[0], iu[1]]


class LPSFixed(SimilarityMethod):
    """The ablation: the paper's chained Gram statistics, fixed, with the same task-embedding head.

    Chain: M_1 = W_1 reshaped to (out_1, in_1*k*k); M_l = S(W_l) @ M_{l-1} with S summing a conv
    kernel over its k x k positions (a linear head enters as is); G_l = M_l^T M_l, divided by its
    trace (ReLU networks are unchanged by scaling a layer by c > 0 and the next by 1/c), upper
    triangles of all G_l; then the class-by-input map M_L (rows in class order), normalised.
    Biases are not used. It was ``lps`` before the learnable layers.
    """

    invariances = (HIDDEN_UNITS,)

    def __init__(self, seed: int = 0, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 1e-2):
        self.seed, self.epochs, self.lr, self.weight_decay = seed, epochs, lr, weight_decay

    def fit(self, view):
        x = torch.from_numpy(chained_gram(view, with_class_map=True))
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
        return transform(self.net_, torch.from_numpy(chained_gram(view, with_class_map=True)))

    def embed(self, view):
        return self._run(view)[0]

    def predict_scores(self, view):
        return self._run(view)[1]


@per_view
def layer_tensors(view, who: str = "lps"):
    """((weights), (biases)) of every layer in order, weights (n, out, in[, k, k]), biases (n, out).
    ``who`` refuses, with one line naming the architecture, what is not convolutions with biases
    followed by one linear head (the form a network of GAP and those layers has)."""
    names, shapes = list(view.layout["name"]), dict(zip(view.layout["name"], view.layout["shape"]))
    layers = view.weight_names()
    chain = [n for w in layers for n in (w, w[: -len("weight")] + "bias")]
    other, missing = [n for n in names if n not in chain], [n for n in chain if n not in shapes]
    if other or missing:
        raise ModelsetError(
            f"{who}: architecture {view.arch!r} is not convolutions with biases and a linear head, "
            f"the layers {who} represents: {', '.join((other + missing)[:3])} "
            f"{'is not a conv/linear weight or bias' if other else 'is missing'}"
        )
    kinds = [len(shapes[w]) for w in layers]
    if (
        kinds[-1] != 2
        or any(k != 4 for k in kinds[:-1])
        or any(shapes[b][1] != shapes[a][0] for a, b in zip(layers, layers[1:]))
    ):
        raise ModelsetError(
            f"{who}: architecture {view.arch!r} is not a chain of convolutions and one linear head "
            f"({', '.join(f'{w} {tuple(shapes[w])}' for w in layers)})"
        )
    return (
        tuple(torch.from_numpy(view.tensor(w)).float() for w in layers),
        tuple(torch.from_numpy(view.tensor(w[: -len("weight")] + "bias")).float() for w in layers),
    )


def conv_geometry(view) -> list[tuple[int, int]]:
    """(stride, padding) of each convolution of the view's architecture, in layer order."""
    from modelset.archs import create_model

    net = create_model(view.arch, in_channels=view.in_channels, n_classes=view.n_classes)
    return [(m.stride[0], m.padding[0]) for m in net.modules() if isinstance(m, nn.Conv2d)]


def _normalised_gram(a):
    """Upper triangle of a^T a divided by its trace, for a (n, rows, r)."""
    g = a.transpose(1, 2) @ a
    return _triu(g / g.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)[:, None, None])


def by_activation(activations: np.ndarray) -> list:
    """[(activation function, indices of the models that use it)]: a zoo may sweep the activation."""
    return [(ACTIVATIONS[a], torch.from_numpy(np.flatnonzero(activations == a))) for a in np.unique(activations)]


@per_view
def chain_input(view):
    """What ``ProbeChain`` runs: the view's layers and its models' own activations. The activations
    are an input, like the weights, so that running test models leaves the fitted chain unchanged."""
    return (*layer_tensors(view), by_activation(view.activation))


class ProbeChain(nn.Module):
    """Every model's responses to r learnable inputs (r, C, s, s), all models at once as the
    groups of grouped convolutions, each with its own activation (an input, with the weights); s is
    ``size`` times the convolutions' total stride, so that the last feature map is ``size`` wide: the
    class-by-input map, and optionally r x r Grams of the pooled activations (``grams`` "all" layers,
    the "output" only, or "none")."""

    def __init__(self, in_channels, geometry, n_layers, n_classes, rank=8, size=4, grams="none"):
        super().__init__()
        side = size * int(np.prod([stride for stride, _ in geometry]))  # the last map is size x size
        self.probes = nn.Parameter(torch.randn(rank, in_channels, side, side))
        self.geometry, self.grams = geometry, grams
        n_grams = {"all": n_layers, "output": 1, "none": 0}[grams]
        self.n_features = n_grams * rank * (rank + 1) // 2 + n_classes * rank

    @staticmethod
    def _act(h, n, activations):
        if len(activations) == 1:
            return activations[0][0](h)
        h = h.reshape(h.shape[0], n, -1, *h.shape[2:])
        out = torch.empty_like(h)
        for fn, idx in activations:
            out[:, idx] = fn(h[:, idx])
        return out.flatten(1, 2)

    def forward(self, x):
        weights, biases, activations = x  # conv weights (n, out, in, k, k), the head (n, classes, width)
        n = len(weights[0])
        h = self.probes.repeat(1, n, 1, 1)  # (r, n*C, s, s)
        feats = []
        for w, b, (stride, pad) in zip(weights[:-1], biases[:-1], self.geometry):
            h = self._act(
                F.conv2d(h, w.flatten(0, 1), b.flatten(), stride=stride, padding=pad, groups=n), n, activations
            )
            if self.grams == "all":
                feats.append(_normalised_gram(h.mean(dim=(2, 3)).reshape(-1, n, w.shape[1]).permute(1, 2, 0)))
        pooled = h.mean(dim=(2, 3)).reshape(-1, n, weights[-2].shape[1]).permute(1, 2, 0)  # (n, width, r)
        out = weights[-1] @ pooled + biases[-1][..., None]  # (n, classes, r)
        if self.grams != "none":
            feats.append(_normalised_gram(out))
        feats.append(F.normalize(out.flatten(1), dim=1))
        return torch.cat(feats, dim=1)


class LPS(SimilarityMethod):
    """Learnable inputs, the models' own layers, the Gram of their outputs and the task-embedding
    head, trained end to end; see the module docstring."""

    invariances = (HIDDEN_UNITS,)

    def __init__(
        self,
        seed: int = 0,
        rank: int = 8,
        size: int = 4,
        grams: str = "output",
        epochs: int = 100,
        lr: float = 1e-2,
        weight_decay: float = 1e-2,
    ):
        self.seed, self.rank, self.size, self.grams = seed, rank, size, grams
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay

    def fit(self, view):
        x = chain_input(view)
        geo = conv_geometry(view)
        make = lambda: ProbeChain(
            view.in_channels,
            geo,
            len(x[0]),
            view.n_classes,
            self.rank,
            self.size,
            self.grams,
        )
        self.net_, self.classes_ = fit_task_embedding(
            make, x, view.labels, self.seed, epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay
        )
        return self

    def _run(self, view):
        # the test models' own weights and activations, with the inputs and head learned in fit
        check_is_fitted(self)
        return transform(self.net_, chain_input(view))

    def embed(self, view):
        return self._run(view)[0]

    def predict_scores(self, view):
        return self._run(view)[1]


class LearnedProbes(LPS):
    """LPS's learned inputs and head without the second-order pooling: the class-by-input map alone."""

    def __init__(
        self,
        seed: int = 0,
        rank: int = 8,
        size: int = 4,
        grams: str = "none",
        epochs: int = 100,
        lr: float = 1e-2,
        weight_decay: float = 1e-2,
    ):
        super().__init__(seed, rank, size, grams, epochs, lr, weight_decay)
