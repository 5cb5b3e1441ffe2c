"""Registry of zoo architectures (timm-style): ``create_model(name, ...)`` builds a torch module.

Parameter layout = the module's ``state_dict`` order; the archive stores every model of one
architecture as one flat float32 row in that layout (see ``flatten`` / ``unflatten``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelsetError
from .families import FAMILIES, make_conv, make_linear
from .families import family as family_spec
from .registry import Registry

# sigmoid and selu: activations of the Small CNN Zoo, for its imported models.
ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "selu": F.selu,
}

# Weight initialisations; biases keep torch's default. "default" is torch's own
# (kaiming-uniform with a=sqrt(5)).
INITS = {
    "default": None,
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "orthogonal": nn.init.orthogonal_,
    # The Small CNN Zoo's inits: zero mean, std ``init_std`` (the preset's train.init_std).
    "normal": None,
    "truncated_normal": None,
    "uniform": None,
}
# (weight, std): the truncated normal is cut at two standard deviations (of the untruncated
# normal), as TensorFlow's TruncatedNormal; the uniform spans +-sqrt(3)*std.
STD_INITS = {
    "normal": lambda w, std: nn.init.normal_(w, 0.0, std),
    "truncated_normal": lambda w, std: nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std),
    "uniform": lambda w, std: nn.init.uniform_(w, -(3**0.5) * std, 3**0.5 * std),
}


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture and what it supports, so that no other module compares names."""

    name: str
    builder: Callable[..., nn.Module]
    batched: bool  # the batched engine's grouped convolutions train it (builders.batched)
    families: tuple[str, ...]  # parameterizations its layers can take (modelset.families)


ARCHS: Registry[ArchSpec] = Registry("architecture")


def register_arch(*, batched: bool = False, families: tuple[str, ...] = ("dense",)):
    """Register a builder ``fn(in_channels, n_classes, activation[, family, family_options])``
    under its function name; ``families`` beyond dense are passed to it as ``family``."""

    def deco(fn):
        ARCHS.add(ArchSpec(fn.__name__, fn, batched, tuple(families)))
        return fn

    return deco


def list_archs() -> list[str]:
    return sorted(ARCHS)


def arch_spec(name: str) -> ArchSpec:
    return ARCHS.lookup(name)


def create_model(
    name,
    *,
    in_channels,
    n_classes,
    activation="relu",
    init="default",
    family="dense",
    family_options=None,
    init_std=0.0,
):
    """A fresh model; ``family`` picks the parameterization of its layers (modelset.families);
    ``init_std`` is the scale of the std-scaled inits (STD_INITS)."""
    spec = arch_spec(name)
    if activation not in ACTIVATIONS:
        raise ModelsetError(f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}")
    if init not in INITS:
        raise ModelsetError(f"unknown init {init!r}; available: {', '.join(INITS)}")
    fam = family_spec(family)
    if family not in spec.families:
        able = [a.name for a in ARCHS.values() if family in a.families]
        raise ModelsetError(
            f"architecture {name!r} supports the families {', '.join(spec.families)}, not "
            f"{family!r}; architectures with {family}: {', '.join(able)}"
        )
    kw = {}
    if len(spec.families) > 1:  # the builder takes the family (dense included)
        kw = {"family": family, "family_options": {**fam.options, **(family_options or {})}}
    model = spec.builder(in_channels=in_channels, n_classes=n_classes, activation=activation, **kw)
    if init in STD_INITS and not init_std > 0:
        raise ModelsetError(f"init {init!r} needs init_std > 0, got {init_std!r}")
    if INITS[init] is not None or init in STD_INITS:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                STD_INITS[init](m.weight, init_std) if init in STD_INITS else INITS[init](m.weight)
    return model


def dropout_mask(shape, p: float, generator: np.random.Generator | None = None) -> torch.Tensor:
    """Inverted dropout's multiplier for an (N, C, H, W) activation: each unit kept with probability
    1 - p and scaled by 1 / (1 - p). Uniforms come from ``generator`` (numpy's PCG64 draws float32
    ~2x faster than torch's CPU generator; None: torch's global one) in (N, H, W, C) order, and the
    mask keeps that memory order (channels last), which the batched engine's grouped activations
    share. Both training engines draw masks through this one function."""
    n, c, h, w = shape
    if generator is None:
        u = torch.rand((n, h, w, c))
    else:
        u = torch.from_numpy(generator.random((n, h, w, c), dtype=np.float32))
    return (u >= p).float().mul_(1.0 / (1.0 - p)).permute(0, 3, 1, 2)


class SmallCNN(nn.Module):
    """3x3 convs padded by 1, with biases and all of one stride, an activation after each, global
    average pooling, linear head. With ``dropout`` > 0, dropout follows every conv layer's
    activation in training mode, its masks drawn from ``dropout_generator`` (torch's global
    generator when None); the training loops set both from the recipe. Neither is a parameter."""

    dropout: float = 0.0
    dropout_generator: np.random.Generator | None = None

    def __init__(
        self,
        in_channels,
        n_classes,
        width=16,
        depth=3,
        activation="relu",
        family="dense",
        family_options=None,
        stride=1,
        padding=1,
    ):
        super().__init__()
        opts = family_options or {}
        chans = [in_channels] + [width] * depth
        # State the family's layers share (ACDC's coefficient banks); empty for the others.
        self.banks = nn.ParameterDict()
        fam = family_spec(family)
        # Layers the family cannot take (DGConv's 1 -> 16 input conv) stay plain convolutions.
        if padding == 1:
            self.convs = nn.ModuleList(
                make_conv(family if fam.takes(a, b) else "dense", a, b, opts, self.banks, stride)
                for a, b in zip(chans, chans[1:])
            )
        else:  # dense only (the registry says so): TensorFlow's "valid" convolutions
            self.convs = nn.ModuleList(
                nn.Conv2d(a, b, 3, stride=stride, padding=padding) for a, b in zip(chans, chans[1:])
            )
        self.head = make_linear(family, width, n_classes, opts)
        self.activation = activation

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        for conv in self.convs:
            x = act(conv(x))
            if self.training and self.dropout:
                x = x * dropout_mask(x.shape, self.dropout, self.dropout_generator).to(x.device)
        return self.head(x.mean(dim=(2, 3)))


@register_arch(batched=True, families=FAMILIES)
def small_cnn(in_channels, n_classes, activation="relu", family="dense", family_options=None):
    """The Small CNN Zoo's layers at stride 1: 3 conv layers of 16 channels, GAP, linear head
    (4,851 params at 1->3). Every layer sees the full resolution: right for 8x8 digits."""
    return SmallCNN(
        in_channels, n_classes, width=16, depth=3, activation=activation, family=family, family_options=family_options
    )


@register_arch(batched=True, families=FAMILIES)
def small_cnn_zoo(in_channels, n_classes, activation="relu", family="dense", family_options=None):
    """The Small CNN Zoo's CNN (Unterthiner et al. 2020): three 3x3 convs of 16 channels with
    stride 2, ReLU, GAP, linear head; 4,970 parameters for 1 channel and 10 classes. On 28x28
    inputs the maps are 14, 7 and 4 pixels wide: ~6x fewer FLOPs than small_cnn."""
    return SmallCNN(
        in_channels,
        n_classes,
        width=16,
        depth=3,
        activation=activation,
        family=family,
        family_options=family_options,
        stride=2,
    )


@register_arch()
def small_cnn_zoo_tf(in_channels, n_classes, activation="relu"):
    """The Small CNN Zoo's CNN as its TensorFlow code builds it (dnn_predict_accuracy's
    train_network.py: ``Conv2D(16, 3, strides=2)`` at Keras's default padding, "valid"): no
    padding, so 28x28 maps shrink to 13, 6 and 2 pixels. ``small_cnn_zoo`` pads by 1 instead,
    which at stride 2 on an even size reads one zero row and column at the top and left; neither
    matches the other's weights. What ``modelset import small-cnn-zoo`` rebuilds the zoo's models as."""
    return SmallCNN(in_channels, n_classes, width=16, depth=3, activation=activation, stride=2, padding=0)


class ConvBN(nn.Module):
    """3x3 convolution without bias (the BatchNorm shift replaces it), BatchNorm, activation."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)


class PlainCNN(nn.Module):
    """VGG-like plain CNN: conv-BN-activation blocks with 2x2 max-pooling between them, global
    average pooling, a linear head. Parameters and BatchNorm buffers come block by block in the
    layout (block i: conv weight, BN weight, bias, running mean, running var, batches tracked)."""

    def __init__(self, in_channels, n_classes, widths=(32, 64, 128, 256), activation="relu"):
        super().__init__()
        chans = [in_channels, *widths]
        self.blocks = nn.ModuleList(ConvBN(a, b) for a, b in zip(chans, chans[1:]))
        self.head = nn.Linear(widths[-1], n_classes)
        self.activation = activation

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        for i, block in enumerate(self.blocks):
            x = act(block.bn(block.conv(x)))
            if i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))


@register_arch()
def vgg4_bn(in_channels, n_classes, activation="relu"):
    """ModelSet500's CNN: 3x3 convs of 32, 64, 128, 256 channels with BatchNorm, max-pooling between
    them, GAP, linear head (389,410 parameters + 964 BatchNorm buffer values at 3->2)."""
    return PlainCNN(in_channels, n_classes, widths=(32, 64, 128, 256), activation=activation)


def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...], int, int, bool]]:
    """(tensor name, shape, offset, size, trainable) for each state_dict entry, in order."""
    trainable = {n for n, _ in model.named_parameters()}
    rows, offset = [], 0
    for name, t in model.state_dict().items():
        rows.append((name, tuple(t.shape), offset, t.numel(), name in trainable))
        offset += t.numel()
    return rows


def flatten(model: nn.Module) -> np.ndarray:
    return torch.cat([t.detach().reshape(-1).float().cpu() for t in model.state_dict().values()]).numpy()


def unflatten(row: np.ndarray, layout_rows) -> OrderedDict[str, torch.Tensor]:
    row = np.asarray(row, dtype=np.float32)
    return OrderedDict(
        (name, torch.from_numpy(row[off : off + size].reshape(shape).copy()))
        for name, shape, off, size, *_ in layout_rows
    )
