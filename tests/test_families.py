"""Each parameterization does what its paper says (layer level)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from builders.build import build
from modelset.families import ACDCConv2d, DGConv2d, STRConv2d, dg_groups, kron_mask, str_weight
from modelset.preset import load_preset
from modelset.verify import verify

from .helpers import MIXED, run_cli


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
    depthwise = F.conv2d(x, layer.weight[torch.arange(16), torch.arange(16)][:, None], layer.bias, padding=1, groups=16)
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
    layer = ACDCConv2d(8, 16, 3, bank, n_atoms=m, padding=1)
    own = sum(p.numel() for p in layer.parameters())
    assert own == m * 9 + 16  # atoms + bias; the coefficients are the shared bank's
    assert bank.numel() == 16 * 8 * m
    x = torch.randn(3, 8, 7, 7)
    torch.testing.assert_close(layer(x), layer.forward_decomposed(x), rtol=1e-4, atol=1e-5)
    assert layer.effective_weight().shape == (16, 8, 3, 3)
    assert layer(x).detach().abs().sum() > 0


# -- families in real zoos --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "mixed.h5"
    build(load_preset("digits-families", MIXED), out, jobs=2, progress=False)
    return out


def test_mixed_zoo_stores_every_family_in_one_layout(mixed_archive, opened):
    ms = opened(mixed_archive)
    m = ms.models
    assert verify(mixed_archive) == []
    assert m.groupby("family").size().to_dict() == {"acdc": 8, "dense": 8, "dgconv": 8, "str": 8}
    assert ms.params().shape == (32, 4851)  # effective weights, directly comparable
    sd = ms.family_state_dict(int(m.index[m.family == "str"][0]))
    assert {"convs.0.s", "head.s"} <= set(sd)
    assert {"banks.16x1", "banks.16x16", "convs.1.atoms"} <= set(
        ms.family_state_dict(int(m.index[m.family == "acdc"][0]))
    )
    assert (m.loc[m.family == "acdc", "n_family_params"] == 16 * 1 * 6 + 16 * 16 * 6 + 3 * (6 * 9 + 16) + 51).all()
    cross = ms.split("cross_family")
    assert set(m.loc[cross["query"], "family"]) == {"dense"} and "dense" not in set(m.loc[cross["gallery"], "family"])


def test_info_reports_each_family(mixed_archive, opened):
    r = run_cli("info", mixed_archive)
    assert r.returncode == 0, r.stderr
    m = opened(mixed_archive).models
    for fam, g in m.groupby("family"):
        line = next(x for x in r.stdout.splitlines() if x.startswith(f"family {fam}:"))
        assert f"{len(g)} models" in line and f"mean {g['test_acc'].mean():.4f}" in line
        assert f"sparsity {g['sparsity'].mean():.3f}" in line


def test_dgconv_effective_weight_is_the_stored_weight_times_the_stored_gates_mask(mixed_archive, opened):
    ms = opened(mixed_archive)
    i = int(ms.models.index[ms.models.family == "dgconv"][0])
    own, eff = ms.family_state_dict(i), ms.state_dict(i)
    binary = (torch.sign(own["convs.1.gate"]) + 1) / 2
    torch.testing.assert_close(eff["convs.1.weight"], own["convs.1.weight"] * kron_mask(binary)[:, :, None, None])
    groups = [int(g) for g in ms.models.loc[i, "groups"].split(",")]
    assert groups[0] == dg_groups(binary.tolist())


def test_every_family_is_rebuilt_and_reproduces_its_accuracy(mixed_archive, opened):
    ms = opened(mixed_archive)
    for family, g in ms.models.groupby("family"):
        row = g.iloc[0]
        net = ms.model(int(row.id))
        assert (
            type(net.convs[1]).__name__
            == {"dense": "Conv2d", "str": "STRConv2d", "dgconv": "DGConv2d", "acdc": "ACDCConv2d"}[family]
        )
        x, y = ms.task_data(row.task, "test")
        with torch.no_grad():
            assert (net(x).argmax(1) == y).float().mean().item() == row.test_acc, family


def test_str_sparsity_rises_with_weight_decay_and_falls_with_abs_s_init(tmp_path, opened):
    base = ["seeds=1", "tasks.count=2", "epochs=8", "family=str"]
    out = tmp_path / "wd.h5"
    build(
        load_preset("digits-families", base + ["families.str.s_init=-4.0", "grid.weight_decay=[0.0, 0.002, 0.01]"]),
        out,
        jobs=2,
        progress=False,
    )
    by_wd = opened(out).models.groupby("weight_decay")["sparsity"].mean()
    assert by_wd.is_monotonic_increasing and by_wd.iloc[-1] > by_wd.iloc[0] + 0.1, by_wd
    deep = tmp_path / "deep.h5"
    build(
        load_preset("digits-families", base + ["families.str.s_init=-7.0", "grid.weight_decay=[0.002]"]),
        deep,
        jobs=2,
        progress=False,
    )
    assert opened(deep).models["sparsity"].mean() < by_wd.loc[0.002]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("flip", "model {mid}: parameter checksum mismatch (row 1 of str of small_cnn)"),
        ("resize", "/architectures/small_cnn/families/str: layout covers 4855 values, params rows have shape (8, 7)"),
        ("drop", "models of str of small_cnn have no /architectures/small_cnn/families/str/params"),
        ("layout", "/architectures/small_cnn/families/str has no layout"),
    ],
)
def test_verify_reports_a_damaged_family_dataset_as_it_reports_architecture_rows(
    damage, message, mixed_archive, tmp_path
):
    """A family's own parameters go through the same checks as the effective weights: a damaged
    family dataset is a finding, not a crash."""
    import h5py

    bad = tmp_path / "bad.h5"
    bad.write_bytes(mixed_archive.read_bytes())
    node = "architectures/small_cnn/families/str"
    with h5py.File(bad, "r+") as f:
        if damage == "flip":
            m = f["models"][()]
            mid = int(np.flatnonzero((m["family"] == b"str") & (m["family_row"] == 1))[0])
            message = message.format(mid=mid)
            f[f"{node}/params"][1, 3] += 1e-3
        elif damage == "resize":
            del f[f"{node}/params"]
            f[f"{node}/params"] = np.zeros((8, 7), np.float32)
        elif damage == "drop":
            del f[f"{node}/params"]
        else:
            del f[f"{node}/layout"]
    problems = verify(bad)
    assert message in problems, problems
