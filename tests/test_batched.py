"""The batched engine against the reference loop it replaces, on real digits tasks.

Stated tolerance. Both engines run the same maths; only the convolutions sum in a different
order (one grouped convolution over the unit vs one convolution per model), a difference of a few
float32 ulps per step. What that becomes after training depends on the optimiser:
- SGD carries it along linearly: every parameter agrees to a relative L2 error <= SGD_REL
  (most models ~1e-8; on an AVX2 core, whose oneDNN kernels block the sums otherwise, a few
  models of a unit measured 1e-6 to 1e-5) and every curve and metric to 1e-5, batch-count masks
  included.
- Adam divides each gradient by its own running RMS, so components whose gradient sits at the
  float noise floor (sums that cancel) move by up to lr in either engine: after 3 epochs of the
  digits500 recipe the relative L2 error is <= 1e-2 (measured ~1.4e-3) and test accuracies agree
  within one test image. RMSprop divides likewise, without Adam's bias correction (its first steps
  are the largest): after 2 epochs of a unit of the recipe options <= RMS_REL (measured 1.2e-2),
  test accuracies within two test images. The optimiser itself is checked bit for bit against
  torch.optim.
Over a whole build this drift makes single models differ; their accuracy distribution must not.
"""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

import modelset
from builders import batched
from builders.batched import _Flat, _Optimizer, train_batched
from builders.build import build, is_up_to_date, shard_dir_for
from builders.plan import make_plan, work_units
from builders.train import make_optimizer, task_tensors, train_reference
from modelset.archs import create_model
from modelset.preset import load_preset

from .helpers import SMALL, run_cli

SGD_REL = 5e-5  # see the module docstring
RMS_REL = 5e-2


def _unit(overrides):
    return work_units(make_plan(load_preset("digits500", overrides)))[0]


def _compare(unit, results, ref=None):
    ref = ref or [train_reference(e) for e in unit]
    rel = max(np.linalg.norm(r.params - b.params) / np.linalg.norm(r.params) for r, b in zip(ref, results))
    for r, b in zip(ref, results):  # NaN where a curve does not apply (groups of non-DGConv models)
        assert all((np.isnan(r.curves[k]) == np.isnan(b.curves[k])).all() for k in r.curves)
    curves = max(
        float(np.nanmax(np.abs(r.curves[k] - b.curves[k]), initial=0)) for r, b in zip(ref, results) for k in r.curves
    )
    metrics = max(abs(r.metrics[k] - b.metrics[k]) for r, b in zip(ref, results) for k in r.metrics)
    return rel, curves, metrics


# Tasks of 400, 402 and 403 train images: with batches of 100 they take 4 or 5 steps per epoch,
# so some models sit out a step and every last batch is padded differently.
MIXED_SGD = [
    "seeds=3",
    "unit_size=9",
    "epochs=2",
    "optimizer=sgd",
    "batch_size=100",
    "momentum=0.9",
    "weight_decay=0.001",
]


def test_mixed_unit_really_has_uneven_batch_counts():
    unit = _unit(MIXED_SGD)
    sizes = {len(task_tensors(e.dataset, e.classes, e.transform)[0][1]) for e in unit}
    assert len({-(-n // 100) for n in sizes}) == 2, sizes


def test_batched_equals_reference_with_sgd():
    unit = _unit(MIXED_SGD)
    rel, curves, metrics = _compare(unit, train_batched(unit))
    assert rel <= SGD_REL and curves <= 1e-5 and metrics <= 1e-5, (rel, curves, metrics)


@pytest.mark.parametrize("family", ["dense", "str", "dgconv", "acdc"])
def test_small_cnn_zoo_strided_convs_train_batched_and_equal_the_reference(family):
    """Stride 2 (8x8 digits -> 4, 2, 1 pixels): the grouped convolutions and their hand-written
    backward pass take each layer's stride, and the pooled gradient the last map's size."""
    unit = _unit([f"family={family}", "arch=small_cnn_zoo", *MIXED_SGD, "lr=0.01"])
    assert {e.engine for e in unit} == {"batched"}
    assert create_model("small_cnn_zoo", in_channels=1, n_classes=10).convs[0].stride == (2, 2)
    rel, curves, metrics = _compare(unit, train_batched(unit))
    assert rel <= SGD_REL and curves <= 1e-5 and metrics <= 1e-5, (rel, curves, metrics)


@pytest.mark.parametrize("family", ["str", "dgconv", "acdc"])
def test_families_train_batched_and_equal_the_reference(family):
    """A family's effective weights come from its own parameters through a vmapped graph; its own
    parameters, statistics and DGConv group curve match the reference loop's."""
    unit = _unit([f"family={family}", *MIXED_SGD, "lr=0.01"])
    assert {e.engine for e in unit} == {"batched"}
    results, ref = train_batched(unit), [train_reference(e) for e in unit]
    rel, curves, metrics = _compare(unit, results, ref)
    assert rel <= SGD_REL and curves <= 1e-5 and metrics <= 1e-5, (rel, curves, metrics)
    for r, b in zip(ref, results):
        assert np.linalg.norm(r.family_params - b.family_params) <= SGD_REL * np.linalg.norm(r.family_params)
        assert r.family_stats.keys() == b.family_stats.keys()
        assert abs(r.family_stats["sparsity"] - b.family_stats["sparsity"]) <= 1e-3
        for k in ("gates", "groups", "n_family_params"):
            assert r.family_stats[k] == b.family_stats[k]
    if family == "dgconv":  # groups are really recorded: they differ between models
        assert len({float(x) for r in results for x in r.curves["groups"]}) > 1
    if family == "str":
        assert min(r.family_stats["sparsity"] for r in ref) > 0


def test_a_unit_holds_each_task_once_and_every_model_reads_its_own():
    """A unit of one task's seeds keeps that task's images once; in a unit of several tasks every
    model's minibatch and evaluation rows are its own task's."""
    assert batched._Data(_unit([]), "cpu").train.x.shape[0] == 1
    unit = _unit(MIXED_SGD)
    data = batched._Data(unit, "cpu")
    tasks = [task_tensors(e.dataset, e.classes, e.transform)[0] for e in unit]
    assert data.train.x.shape[0] == len({(e.dataset, tuple(e.classes)) for e in unit}) == 3
    idx = torch.stack([torch.randperm(len(t[1]))[:50] for t in tasks])
    x, y = data.train.gather(idx)
    start, stop = 390, 410  # past the end of the smallest task: padded rows
    xs, ys = data.train.rows(start, stop)
    for m, t in enumerate(tasks):
        assert torch.equal(x[m], t[0][idx[m]]) and torch.equal(y[m], t[1][idx[m]])
        n = len(t[1][start:stop])
        assert torch.equal(xs[m, :n], t[0][start:stop]) and torch.equal(ys[m, :n], t[1][start:stop])
        assert data.n_train[m] == len(t[1]) and data.n_test[m] == len(t[3])


def test_evaluation_in_chunks_gives_the_same_curves(monkeypatch):
    """Splits are evaluated a chunk at a time: the chunk size changes neither weights nor accuracies."""
    unit = _unit(["seeds=3", "unit_size=9", "epochs=2"])
    whole = train_batched(unit)
    monkeypatch.setattr(batched, "EVAL_IMAGES", 7)
    chunked = train_batched(unit)
    for a, b in zip(whole, chunked):
        assert a.params.tobytes() == b.params.tobytes()
        for k in ("train_acc", "test_acc"):
            assert np.array_equal(a.curves[k], b.curves[k]) and a.metrics[k] == b.metrics[k]
        for k in ("train_loss", "test_loss"):
            assert np.allclose(a.curves[k], b.curves[k], rtol=1e-6) and abs(a.metrics[k] - b.metrics[k]) <= 1e-6


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu"])
def test_other_activations_use_their_own_backward(activation):
    unit = _unit(["seeds=2", "unit_size=4", "epochs=1", "optimizer=sgd", f"activation={activation}"])
    rel, curves, metrics = _compare(unit, train_batched(unit))
    assert rel <= SGD_REL and curves <= 1e-5 and metrics <= 1e-5, (rel, curves, metrics)


def test_batched_equals_reference_with_the_digits500_recipe():
    unit = _unit(["epochs=3"])
    results, ref = train_batched(unit), [train_reference(e) for e in unit]
    rel, curves, metrics = _compare(unit, results, ref)
    assert rel <= 1e-2, rel
    n_test = len(task_tensors(unit[0].dataset, unit[0].classes, unit[0].transform)[0][3])
    for r, b in zip(ref, results):
        assert abs(r.metrics["test_acc"] - b.metrics["test_acc"]) <= 1 / n_test + 1e-6
        assert set(b.curves) == set(r.curves) and all(len(b.curves[k]) == 3 for k in b.curves)


def test_grid_of_learning_rates_trains_in_one_unit():
    unit = _unit(["seeds=2", "tasks.count=2", "unit_size=8", "epochs=2", "optimizer=sgd", "grid.lr=[0.01, 0.05]"])
    assert len({e.hparams["lr"] for e in unit}) == 2
    rel, curves, metrics = _compare(unit, train_batched(unit))
    assert rel <= SGD_REL and metrics <= 1e-5


@pytest.mark.parametrize(
    "kind, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01), ("sgd", 0.01), ("rmsprop", 0.01)]
)
def test_optimizer_is_torch_optim_bit_for_bit(kind, weight_decay):
    """Same gradients in, same parameters out, with models sitting out some steps."""
    torch.manual_seed(0)
    models = [create_model("small_cnn", in_channels=1, n_classes=3) for _ in range(3)]
    refs = [create_model("small_cnn", in_channels=1, n_classes=3) for _ in range(3)]
    for a, b in zip(models, refs):
        b.load_state_dict(a.state_dict())
    hps = [dict(optimizer=kind, lr=lr, weight_decay=weight_decay, momentum=0.9) for lr in (0.003, 0.003, 0.003)]
    if kind == "rmsprop":  # per-model learning rates, too
        hps = [{**h, "lr": lr} for h, lr in zip(hps, (0.003, 0.001, 0.01))]
    ref_opts = [make_optimizer(r.parameters(), h) for r, h in zip(refs, hps)]
    flat = _Flat(models, "cpu")
    opt = _Optimizer(flat, hps)
    for step in range(12):
        grads = [[torch.randn_like(p) * 10.0 ** -(step % 8) for p in r.parameters()] for r in refs]
        active = np.array([True, step % 3 != 1, True])
        for m in np.flatnonzero(active):
            for p, g in zip(refs[m].parameters(), grads[m]):
                p.grad = g.clone()
            ref_opts[m].step()
        for i in range(len(flat.names)):
            flat.block(i, flat.grad).copy_(torch.stack([grads[m][i] for m in range(3)]))
        opt.step(active)
    for m in range(3):
        expected = torch.cat([p.detach().reshape(-1) for p in refs[m].parameters()]).numpy()
        assert flat.row(m).tobytes() == expected.tobytes()


# The Small CNN Zoo's recipe options: each model its own dropout rate, init std and train
# fraction (a subset of its task's images), with RMSprop and per-model learning rates.
RECIPE_OPTIONS = [
    "seeds=3",
    "unit_size=6",
    "epochs=2",
    "batch_size=50",
    "init=truncated_normal",
    "sample.dropout={uniform=[0.1, 0.6]}",
    "sample.init_std={loguniform=[0.02, 0.2]}",
    "sample.lr={loguniform=[0.001, 0.01]}",
    "sample.train_fraction={choice=[0.5]}",
]


@pytest.mark.parametrize("optimizer, tolerance", [("sgd", SGD_REL), ("rmsprop", RMS_REL)])
def test_recipe_options_train_batched_and_equal_the_reference(optimizer, tolerance):
    """Dropout masks are drawn per model as the reference loop draws them, so the engines agree as
    without dropout; RMSprop, like Adam, divides by a running RMS (see the module docstring)."""
    unit = _unit([*RECIPE_OPTIONS, f"optimizer={optimizer}"])
    assert {e.engine for e in unit} == {"batched"} and len({e.hparams["dropout"] for e in unit}) == len(unit)
    results, ref = train_batched(unit), [train_reference(e) for e in unit]
    rel, curves, metrics = _compare(unit, results, ref)
    assert rel <= tolerance, rel
    if optimizer == "sgd":
        assert curves <= 1e-5 and metrics <= 1e-5, (curves, metrics)
    n_test = len(task_tensors(unit[0].dataset, unit[0].classes, unit[0].transform)[0][3])
    assert max(abs(r.metrics["test_acc"] - b.metrics["test_acc"]) for r, b in zip(ref, results)) <= 2 / n_test + 1e-6


def test_train_fraction_is_a_fixed_subset_per_model():
    from builders.train import model_data

    unit = _unit(["seeds=3", "train_fraction=0.25"])[:2]  # two seeds of one task
    full = task_tensors(unit[0].dataset, unit[0].classes, unit[0].transform)[0]
    x0, y0, xt, _ = model_data(unit[0])
    assert len(y0) == round(0.25 * len(full[1])) and len(model_data(unit[1])[1]) == len(y0)
    assert torch.equal(x0, model_data(unit[0])[0])  # fixed: the same images every time
    assert not torch.equal(x0, model_data(unit[1])[0])  # its own per model
    assert torch.equal(xt, full[2])  # scored on the whole test split


def test_dropout_and_init_std_change_training():
    """Dropout is really applied in training (and not in evaluation); the init std scales the init."""
    base = ["seeds=1", "tasks.count=1", "epochs=1", "optimizer=sgd", "lr=0.05"]
    plain, dropped = (train_batched(_unit(base + extra)) for extra in ([], ["dropout=0.5"]))
    assert plain[0].params.tobytes() != dropped[0].params.tobytes()
    from builders.train import init_model

    small, large = (init_model(_unit(base + ["init=normal", f"init_std={s}"])[0]) for s in (0.01, 0.1))
    ratio = small.convs[1].weight.std().item() / large.convs[1].weight.std().item()
    assert abs(ratio - 0.1) < 0.02, ratio


def test_engine_is_part_of_the_plan_hash_and_shards(tmp_path, opened):
    small = ["seeds=1", "tasks.count=2", "epochs=1", "unit_size=1"]
    a, b = (make_plan(load_preset("digits500", small + [f"engine={e}"])) for e in ("batched", "reference"))
    assert a.hash != b.hash
    assert not {a.unit_hash(u) for u in work_units(a)} & {b.unit_hash(u) for u in work_units(b)}
    out = tmp_path / "z.h5"
    build(load_preset("digits500", small), out, progress=False, keep_shards=True)
    assert is_up_to_date(out, a) and not is_up_to_date(out, b)
    report = build(load_preset("digits500", small + ["engine=reference"]), out, progress=False, keep_shards=True)
    assert report["trained"] == 2 and len(list(shard_dir_for(out).glob("unit-*.npz"))) == 4
    assert 'engine = "reference"' in opened(out).attrs["preset"]


def test_engine_flag_and_bad_engine(tmp_path, opened):
    out = tmp_path / "ref.h5"
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        out,
        "--no-progress",
        "--engine",
        "reference",
        *[a for s in ["seeds=1", "tasks.count=2", "epochs=1"] for a in ("--set", s)],
    )
    assert r.returncode == 0, r.stderr
    assert 'engine = "reference"' in opened(out).attrs["preset"]
    r = run_cli("build", "--preset", "digits500", "--out", tmp_path / "x" / "y.h5", "--set", "engine=turbo")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "engine must be one of batched, reference" in r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_one_line_exit_2_nothing_written(tmp_path):
    r = run_cli("build", "--preset", "digits500", "--out", tmp_path / "out" / "z.h5", "--device", "cuda")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "torch sees no GPU" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: torch.cuda.is_available() is False")
@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_cuda_build_has_the_cpu_plan_and_layout(small_archive, tmp_path, engine):
    out = tmp_path / "cuda.h5"
    build(load_preset("digits500", SMALL + [f"engine={engine}"]), out, device="cuda", progress=False)
    with modelset.load(small_archive) as cpu, modelset.load(out) as gpu:
        assert gpu.models[["task", "seed", "init_seed", "data_seed"]].equals(
            cpu.models[["task", "seed", "init_seed", "data_seed"]]
        )
        assert (
            gpu.h5["architectures/small_cnn/layout"][()].tobytes()
            == cpu.h5["architectures/small_cnn/layout"][()].tobytes()
        )
        assert gpu.attrs["plan_hash"] != cpu.attrs["plan_hash"]  # never mixed with CPU results
        assert np.abs(gpu.models["test_acc"] - cpu.models["test_acc"]).max() <= 0.05


@pytest.fixture(scope="session")
def digits500_reference(tmp_path_factory):
    """digits500 built by the reference loop, as before the batched engine."""
    out = tmp_path_factory.mktemp("digits500_reference") / "digits500.h5"
    build(load_preset("digits500", ["engine=reference"]), out, jobs=2, progress=False)
    return out


@pytest.mark.slow
def test_digits500_accuracy_distribution_matches_the_reference(digits500, digits500_reference):
    with modelset.load(digits500) as b, modelset.load(digits500_reference) as r:
        assert b.attrs["preset"].count('engine = "batched"') == 1
        mb, mr = b.models, r.models
    assert (
        mb[["task", "seed", "init_seed", "data_seed"]].values == mr[["task", "seed", "init_seed", "data_seed"]].values
    ).all()
    for col in ("test_acc", "train_acc"):
        assert ks_2samp(mb[col], mr[col]).pvalue > 0.01, (mb[col].describe(), mr[col].describe())
        assert abs(mb[col].mean() - mr[col].mean()) < 0.005
    # Paired by plan entry, most models end within one test image of their reference twin.
    assert (np.abs(mb["test_acc"] - mr["test_acc"]) <= 1 / 130).mean() >= 0.8
