"""Parameterizations of convolutions (and linear layers) that a zoo can mix in, by family name.

Every family computes an *effective* weight in the dense layer's shape; ``effective_state_dict``
gives a model's weights in the dense architecture's layout, so all families are compared directly.

- ``str`` (Kusupati et al. 2020, Soft Threshold Reparameterization):
  W_eff = sign(W) * relu(|W| - sigmoid(s)), one learnable threshold s per layer; weight decay acts on
  s too, and sparsity is steered only by s_init and weight decay.
- ``dgconv`` (Zhang et al. 2019, Differentiable Learning-to-Group): a C x C binary mask
  U = U_1 ⊗ ... ⊗ U_K, U_k = g_k * ones(2, 2) + (1 - g_k) * I_2, K = log2(C); binary gates
  g = (sign(ĝ) + 1) / 2 from real gates ĝ with a straight-through gradient; W_eff = W ⊙ U;
  groups = 2^(K - Σg). A layer whose input has one channel stays a plain convolution.
- ``acdc`` (Wang et al. 2020, atom-coefficient decomposition): W[o, i] = Σ_j α[o, i, j] D_j with m
  k x k atoms D per layer and coefficients α shared by the layers of a sharing group (layers of the
  same (out, in) shape, i.e. per stage).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelsetError
from .registry import Registry


# -- STR ----------------------------------------------------------------------------------------
def str_weight(w, s):
    return torch.sign(w) * F.relu(w.abs() - torch.sigmoid(s))


class _STR:
    """One learnable threshold ``s`` on top of a conv or linear layer's weight."""

    def __init__(self, *args, s_init=-5.0, **kw):
        super().__init__(*args, **kw)
        self.s = nn.Parameter(torch.tensor(float(s_init)))

    def effective_weight(self):
        return str_weight(self.weight, self.s)


class STRConv2d(_STR, nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


class STRLinear(_STR, nn.Linear):
    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


# -- DGConv -------------------------------------------------------------------------------------
def binary_gates(real):
    """g = (sign(ĝ) + 1) / 2 forward, identity gradient backward (straight-through)."""
    hard = (torch.sign(real) + 1) / 2
    return real + (hard - real).detach()


def kron_mask(gates):
    """U = ⊗_k (g_k * ones(2, 2) + (1 - g_k) * I_2): a C x C block mask, C = 2^K."""
    eye, ones = (
        torch.eye(2, dtype=gates.dtype, device=gates.device),
        torch.ones(2, 2, dtype=gates.dtype, device=gates.device),
    )
    u = torch.ones(1, 1, dtype=gates.dtype, device=gates.device)
    for g in gates:
        u = torch.kron(u, g * ones + (1 - g) * eye)
    return u


def dg_groups(binary) -> int:
    return 2 ** (len(binary) - int(round(float(sum(binary)))))


class DGConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, *args, gate_init=1.0, **kw):
        super().__init__(in_channels, out_channels, *args, **kw)
        if in_channels != out_channels or in_channels & (in_channels - 1):
            raise ModelsetError(
                f"DGConv needs equal input and output channels, a power of two; got {in_channels} -> {out_channels}"
            )
        k = int(math.log2(in_channels))
        # Real gates never exactly 0: sign(0) would make a gate neither open nor closed.
        self.gate = nn.Parameter(torch.full((k,), float(gate_init)))

    def mask(self):
        return kron_mask(binary_gates(self.gate))

    def groups_now(self) -> int:
        return dg_groups((torch.sign(self.gate.detach()) + 1) / 2)

    def effective_weight(self):
        return self.weight * self.mask()[:, :, None, None]

    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


# -- ACDC ---------------------------------------------------------------------------------------
class ACDCConv2d(nn.Module):
    """A conv whose kernels are combinations of m atoms; the coefficients live in a shared bank.

    ``bank`` returns the (out, in, m) coefficients; it is looked up at every call (not held), so
    the bank is registered once, on the model, and ``torch.func.functional_call`` can swap it.
    """

    def __init__(self, in_channels, out_channels, kernel_size, bank, n_atoms, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        self._bank = bank if callable(bank) else (lambda: bank)
        self.atoms = nn.Parameter(torch.empty(n_atoms, kernel_size, kernel_size))
        nn.init.orthogonal_(self.atoms.view(n_atoms, -1))
        fan_in = in_channels * kernel_size * kernel_size
        bound = 1 / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    @property
    def coefficients(self):
        return self._bank()

    def effective_weight(self):
        return torch.einsum("oim,mhw->oihw", self.coefficients, self.atoms)

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), self.bias, stride=self.stride, padding=self.padding)

    def forward_decomposed(self, x):
        """The same layer evaluated as atoms first, then a 1x1 conv with the coefficients."""
        n, c, h, w = x.shape
        m = self.atoms.shape[0]
        y = F.conv2d(
            x.reshape(n * c, 1, h, w), self.atoms[:, None], stride=self.stride, padding=self.padding
        )  # (n*c, m, h', w')
        y = y.reshape(n, c * m, *y.shape[-2:])
        mix = self.coefficients.reshape(self.out_channels, self.in_channels * m, 1, 1)
        return F.conv2d(y, mix, self.bias)


# -- the registry: one entry per family ---------------------------------------------------------
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Family:
    """A parameterization: its layer options (defaults and checks), its layer builders, and what
    the rest of modelset needs to know of it.

    ``conv(in_ch, out_ch, opts, stride, shared)`` builds one 3x3 conv padded by 1, where ``takes``
    says it can (other layers of the model stay plain: the architecture asks ``takes`` and says so);
    ``shared`` is the model's own ParameterDict for state its layers share (ACDC's banks).
    ``own_params``: the family has parameters of its own beside the effective weights. The archive
    stores them under ``families/<name>``, and the batched engine computes the effective weights from
    them every step (a small vmapped graph); a family without them trains on its weights directly.
    """

    name: str
    options: dict = field(default_factory=dict)  # option -> default
    checks: dict = field(default_factory=dict)  # option -> (predicate, what it must be)
    conv: Callable | None = None  # None: plain nn.Conv2d
    linear: Callable | None = None  # None: plain nn.Linear
    takes: Callable[[int, int], bool] = lambda in_ch, out_ch: True
    own_params: bool = True

    def check(self, opts: dict, other_keys=()) -> str | None:
        """Why ``opts`` is invalid, or None; ``other_keys`` are valid too and checked elsewhere."""
        for key, value in opts.items():
            if key in other_keys:
                continue
            if key not in self.options:
                return f"families.{self.name}.{key} is unknown; valid: {', '.join([*self.options, *other_keys])}"
            ok, what = self.checks.get(key, (_is_num, "a number"))
            if not ok(value):
                return f"families.{self.name}.{key} must be {what}, got {value!r}"
        return None


def _dgconv(in_ch, out_ch, opts, stride, shared):
    layer = DGConv2d(in_ch, out_ch, 3, stride=stride, padding=1)
    with torch.no_grad():  # gates drawn from the model's init RNG; never exactly 0
        g = torch.randn(layer.gate.shape) * opts["gate_std"] + opts["gate_mean"]
        layer.gate.copy_(torch.where(g == 0, torch.full_like(g, 1e-3), g))
    return layer


def _acdc(in_ch, out_ch, opts, stride, shared):
    key, m = f"{out_ch}x{in_ch}", opts["atoms"]
    if key not in shared:  # layers of one (out, in) shape share their coefficients
        # std such that the composed kernels start at torch's default conv scale
        std = math.sqrt(3.0 / (in_ch * 9 * m)) * 3
        shared[key] = nn.Parameter(torch.randn(out_ch, in_ch, m) * std)
    return ACDCConv2d(in_ch, out_ch, 3, lambda: shared[key], n_atoms=m, stride=stride, padding=1)


FAMILIES: Registry[Family] = Registry(
    "family",
    (
        Family("dense", own_params=False),
        Family(
            "str",
            options={"s_init": -5.0},
            conv=lambda i, o, opts, stride, shared: STRConv2d(i, o, 3, stride=stride, padding=1, s_init=opts["s_init"]),
            linear=lambda i, o, opts: STRLinear(i, o, s_init=opts["s_init"]),
        ),
        # C -> C convolutions with C a power of two > 1 (the mask is a Kronecker product of 2x2 blocks)
        Family(
            "dgconv",
            options={"gate_mean": 0.0, "gate_std": 1.0},
            checks={"gate_std": (lambda v: _is_num(v) and v >= 0, "a number >= 0")},
            conv=_dgconv,
            takes=lambda i, o: i == o and i > 1 and i & (i - 1) == 0,
        ),
        Family(
            "acdc",
            options={"atoms": 6},
            checks={
                "atoms": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1")
            },
            conv=_acdc,
        ),
    ),
)


def family(name: str) -> Family:
    return FAMILIES.lookup(name)


def make_conv(name: str, in_ch: int, out_ch: int, opts: dict, shared: nn.ParameterDict, stride: int = 1) -> nn.Module:
    """One 3x3 conv of family ``name``, padded by 1 ('same' at stride 1)."""
    fam = family(name)
    if not fam.takes(in_ch, out_ch):
        raise ModelsetError(
            f"family {name!r} cannot make a {in_ch} -> {out_ch} convolution; "
            "ask Family.takes first and build that layer plain"
        )
    if fam.conv is None:
        return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
    return fam.conv(in_ch, out_ch, opts, stride, shared)


def make_linear(name: str, in_f: int, out_f: int, opts: dict) -> nn.Module:
    fam = family(name)
    return nn.Linear(in_f, out_f) if fam.linear is None else fam.linear(in_f, out_f, opts)


def effective_weights(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Weights and biases in the dense architecture's names, shapes and order, differentiable in
    the family's own parameters."""
    out = OrderedDict()
    for name, m in model.named_modules():
        if hasattr(m, "effective_weight") or isinstance(m, (nn.Conv2d, nn.Linear)):
            out[f"{name}.weight"] = m.effective_weight() if hasattr(m, "effective_weight") else m.weight
            if m.bias is not None:
                out[f"{name}.bias"] = m.bias
    return out


def effective_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """``effective_weights``, detached: what the archive stores for every family."""
    return OrderedDict((k, v.detach()) for k, v in effective_weights(model).items())


def family_stats(model: nn.Module) -> dict:
    """What each family records: per-layer and total sparsity of the effective weights, DGConv
    gates and group counts, and the number of the family's own trainable parameters."""
    weights = [(n, w) for n, w in effective_state_dict(model).items() if n.endswith(".weight")]
    zeros = [float((w == 0).float().mean()) for _, w in weights]
    total = sum(int((w == 0).sum()) for _, w in weights) / sum(w.numel() for _, w in weights)
    dg = [m for m in model.modules() if isinstance(m, DGConv2d)]
    return {
        "sparsity": total,
        "sparsity_layers": ",".join(f"{z:.4f}" for z in zeros),
        "groups": ",".join(str(m.groups_now()) for m in dg),
        "gates": ";".join(",".join(str(int(g > 0)) for g in m.gate.detach()) for m in dg),
        "n_family_params": sum(p.numel() for p in model.parameters()),
    }


def mean_groups(model: nn.Module) -> float:
    dg = [m.groups_now() for m in model.modules() if isinstance(m, DGConv2d)]
    return float(sum(dg) / len(dg)) if dg else float("nan")
