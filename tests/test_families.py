"""Each parameterization does what its paper says (layer level)."""

import pytest
import torch
import torch.nn.functional as F

from modelset.families import ACDCConv2d, DGConv2d, STRConv2d, dg_groups, kron_mask, str_weight


def test_str_soft_threshold_formula():
    w = torch.tensor([-1.0, -0.2, 0.0, 0.1, 0.7])
    s = torch.tensor(0.0)  # sigmoid(0) = 0.5
    torch.testing.assert_close(str_weight(w, s), torch.tensor([-0.5, 0.0, 0.0, 0.0, 0.2]))
    layer = STRConv2d(2, 4, 3, s_init=-3.0)
    assert layer.s.requires_grad and layer.s.shape == ()


def test_dgconv_all_gates_open_is_a_dense_conv():
    torch.manual_seed(0)
    layer = DGConv2d(16, 16, 3, padding=1, gate_init=1.0)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))
    assert layer.groups_now() == 1


def test_dgconv_all_gates_closed_is_depthwise():
    torch.manual_seed(0)
    layer = DGConv2d(16, 16, 3, padding=1, gate_init=-1.0)
    x = torch.randn(2, 16, 8, 8)
    depthwise = F.conv2d(x, layer.weight[torch.arange(16), torch.arange(16)][:, None], layer.bias, padding=1,
                         groups=16)
    torch.testing.assert_close(layer(x), depthwise)
    assert layer.groups_now() == 16


@pytest.mark.parametrize("gates", [[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1]])
def test_dgconv_group_formula_matches_the_mask(gates):
    u = kron_mask(torch.tensor(gates, dtype=torch.float32))
    # The mask's connected blocks: count distinct row patterns = number of groups.
    n_groups = len({tuple(row.tolist()) for row in u})
    assert n_groups == dg_groups(gates) == 2 ** (len(gates) - sum(gates))
    assert (u.sum(1) == 16 // n_groups).all()  # every output sees C/groups inputs


def test_dgconv_gates_get_straight_through_gradients():
    layer = DGConv2d(4, 4, 3, padding=1, gate_init=0.5)
    layer(torch.randn(1, 4, 5, 5)).square().sum().backward()
    assert layer.gate.grad is not None and layer.gate.grad.abs().sum() > 0


def test_acdc_parameter_count_and_two_evaluation_forms_agree():
    torch.manual_seed(0)
    m = 6
    bank = torch.nn.Parameter(torch.randn(16, 8, m) * 0.1)
    layer = ACDCConv2d(8, 16, 3, bank, padding=1)
    own = sum(p.numel() for n, p in layer.named_parameters() if n != "coefficients")
    assert own == m * 9 + 16  # atoms + bias; the coefficients are the shared bank's
    assert bank.numel() == 16 * 8 * m
    x = torch.randn(3, 8, 7, 7)
    torch.testing.assert_close(layer(x), layer.forward_decomposed(x), rtol=1e-4, atol=1e-5)
    assert layer.effective_weight().shape == (16, 8, 3, 3)
    assert layer(x).detach().abs().sum() > 0
