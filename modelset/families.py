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

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("dense", "str", "dgconv", "acdc")


# -- STR ----------------------------------------------------------------------------------------
def str_weight(w, s):
    return torch.sign(w) * F.relu(w.abs() - torch.sigmoid(s))


class STRConv2d(nn.Conv2d):
    def __init__(self, *args, s_init=-5.0, **kw):
        super().__init__(*args, **kw)
        self.s = nn.Parameter(torch.tensor(float(s_init)))

    def effective_weight(self):
        return str_weight(self.weight, self.s)

    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


class STRLinear(nn.Linear):
    def __init__(self, *args, s_init=-5.0, **kw):
        super().__init__(*args, **kw)
        self.s = nn.Parameter(torch.tensor(float(s_init)))

    def effective_weight(self):
        return str_weight(self.weight, self.s)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


# -- DGConv -------------------------------------------------------------------------------------
def binary_gates(real):
    """g = (sign(ĝ) + 1) / 2 forward, identity gradient backward (straight-through)."""
    hard = (torch.sign(real) + 1) / 2
    return real + (hard - real).detach()


def kron_mask(gates):
    """U = ⊗_k (g_k * ones(2, 2) + (1 - g_k) * I_2): a C x C block mask, C = 2^K."""
    eye, ones = torch.eye(2, dtype=gates.dtype, device=gates.device), torch.ones(2, 2, dtype=gates.dtype,
                                                                                   device=gates.device)
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
            raise ValueError("DGConv needs equal input and output channels, a power of two")
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
    """A conv whose kernels are combinations of m atoms; the coefficients live in a shared bank."""

    def __init__(self, in_channels, out_channels, kernel_size, coefficients: nn.Parameter, padding=0, bias=True):
        super().__init__()
        m = coefficients.shape[-1]
        self.in_channels, self.out_channels, self.padding = in_channels, out_channels, padding
        self.atoms = nn.Parameter(torch.empty(m, kernel_size, kernel_size))
        nn.init.orthogonal_(self.atoms.view(m, -1))
        self.coefficients = coefficients  # shared: registered once on the model, referenced here
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def effective_weight(self):
        return torch.einsum("oim,mhw->oihw", self.coefficients, self.atoms)

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)

    def forward_decomposed(self, x):
        """The same layer evaluated as atoms first, then a 1x1 conv with the coefficients."""
        n, c, h, w = x.shape
        m = self.atoms.shape[0]
        y = F.conv2d(x.reshape(n * c, 1, h, w), self.atoms[:, None], padding=self.padding)  # (n*c, m, h', w')
        y = y.reshape(n, c * m, *y.shape[-2:])
        mix = self.coefficients.reshape(self.out_channels, self.in_channels * m, 1, 1)
        return F.conv2d(y, mix, self.bias)
