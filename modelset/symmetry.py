"""Symmetries of weight space: transforms of a model's weights that leave its function unchanged.

They apply to a chain of convolutions (or linear layers) with biases, each followed by the
activation, then global average pooling and a linear head (``small_cnn``, ``small_cnn_zoo``,
``small_cnn_zoo_tf``, every family through its effective weights):

- **permutation** of any hidden layer's units: a layer's output channels (weights and bias) and
  the next layer's input channels in the same new order; GAP commutes with it, so the last conv's
  channels are the head's inputs. Any activation.
- **scaling** (``relu``): relu(s·x) = s·relu(x) for s > 0, so multiplying a hidden unit's incoming
  weights and bias by s and its outgoing weights by 1/s changes nothing (GAP is linear).
- **sign** (``tanh``): tanh is odd, so negating a unit's incoming weights and bias and its
  outgoing weights changes nothing.

Tensors are batched, n models at once: weights (n, out, in[, k, k]), biases (n, out), in layer
order (``layer_tensors``). ``state_dict`` helpers wrap one model. The input and output units keep
their order: the input's channels and the classes mean something.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from .errors import ModelsetError


def chain(shapes: dict) -> list[tuple[str, str]]:
    """(weight name, bias name) of every layer, in order, from {tensor name: shape} in layout order;
    a ModelsetError if the tensors are not convolutions with biases and one linear head."""
    names = list(shapes)
    weights = [n for n in names if n.endswith(".weight") and len(shapes[n]) >= 2]
    pairs = [(w, w[: -len("weight")] + "bias") for w in weights]
    covered = {n for p in pairs for n in p}
    stray = [n for n in names if n not in covered] + [b for _, b in pairs if b not in shapes]
    kinds = [len(shapes[w]) for w in weights]
    if (
        stray
        or not weights
        or kinds[-1] != 2
        or any(k != 4 for k in kinds[:-1])
        or any(shapes[b][1] != shapes[a][0] for a, b in zip(weights, weights[1:]))
    ):
        what = (
            f"{stray[0]!r} is not a conv/linear weight or bias"
            if stray
            else ", ".join(f"{w} {tuple(shapes[w])}" for w in weights) or "no weights"
        )
        raise ModelsetError(
            f"not a chain of convolutions with biases and one linear head ({what}); "
            f"weight-space symmetries and layouts apply to small_cnn-like architectures"
        )
    return pairs


def layer_tensors(state_dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One model's (weights, biases) in layer order, batched with n = 1."""
    pairs = chain({k: tuple(v.shape) for k, v in state_dict.items()})
    return [state_dict[w][None] for w, _ in pairs], [state_dict[b][None] for _, b in pairs]


def to_state_dict(state_dict, weights, biases) -> OrderedDict[str, torch.Tensor]:
    """``state_dict`` with its layers replaced by model 0 of batched ``weights`` and ``biases``."""
    pairs = chain({k: tuple(v.shape) for k, v in state_dict.items()})
    out = OrderedDict(state_dict)
    for (w, b), wt, bt in zip(pairs, weights, biases):
        out[w], out[b] = wt[0].contiguous(), bt[0].contiguous()
    return out


def permute_hidden(weights, biases, perms):
    """Hidden layer i's units reordered by ``perms[i]`` ((n, h) indices, one permutation per model):
    its output rows and bias, and the next layer's input columns alike."""
    weights, biases = list(weights), list(biases)
    for i, p in enumerate(perms):
        n, h = p.shape
        w, nxt = weights[i], weights[i + 1]
        weights[i] = w.gather(1, p.view(n, h, *[1] * (w.ndim - 2)).expand_as(w))
        biases[i] = biases[i].gather(1, p)
        weights[i + 1] = nxt.gather(2, p.view(n, 1, h, *[1] * (nxt.ndim - 3)).expand_as(nxt))
    return weights, biases


def scale_hidden(weights, biases, factors):
    """Hidden layer i's units scaled by ``factors[i]`` ((n, h)): incoming weights and bias times
    the factor, outgoing weights divided by it. Function-preserving for positive factors under
    relu, and for factors of ±1 under tanh (``SYMMETRIES``)."""
    weights, biases = list(weights), list(biases)
    for i, s in enumerate(factors):
        n, h = s.shape
        weights[i] = weights[i] * s.view(n, h, *[1] * (weights[i].ndim - 2))
        biases[i] = biases[i] * s
        weights[i + 1] = weights[i + 1] / s.view(n, 1, h, *[1] * (weights[i + 1].ndim - 3))
    return weights, biases


def random_permutations(biases, generator: torch.Generator) -> list[torch.Tensor]:
    """A uniformly random permutation of every hidden layer's units, per model."""
    return [torch.argsort(torch.rand(*b.shape, generator=generator), dim=1) for b in list(biases)[:-1]]


def _positive(biases, generator, spread: float = 1.0):
    # log-uniform on [e^-spread, e^spread]: scales of either direction, never near 0
    return [torch.exp((2 * torch.rand(*b.shape, generator=generator) - 1) * spread) for b in list(biases)[:-1]]


def _signs(biases, generator):
    return [torch.randint(0, 2, tuple(b.shape), generator=generator).float() * 2 - 1 for b in list(biases)[:-1]]


# activation -> (name of its symmetry, a random draw of its per-unit factors). One entry per activation
# that has one; the others (gelu, silu, sigmoid, selu) have permutations only.
SYMMETRIES = {"relu": ("scaling", _positive), "tanh": ("sign", _signs)}


def random_factors(activation: str, biases, generator: torch.Generator) -> list[torch.Tensor]:
    """Random function-preserving per-unit factors for ``activation`` (for ``scale_hidden``)."""
    if activation not in SYMMETRIES:
        raise ModelsetError(
            f"activation {activation!r} has no scaling or sign symmetry (those with one: "
            f"{', '.join(f'{a} ({s})' for a, (s, _) in SYMMETRIES.items())}); permute its units instead"
        )
    return SYMMETRIES[activation][1](biases, generator)


def random_permutation(weights, biases, generator: torch.Generator):
    """Every model's hidden units in a new random order: the same functions, as other weight vectors."""
    return permute_hidden(weights, biases, random_permutations(biases, generator))


def random_symmetry(weights, biases, activation: str, generator: torch.Generator):
    """A random permutation, then (where ``activation`` has one) random scaling or sign factors."""
    weights, biases = random_permutation(weights, biases, generator)
    if activation in SYMMETRIES:
        weights, biases = scale_hidden(weights, biases, random_factors(activation, biases, generator))
    return weights, biases
