"""Checkpoints: a model's weights and metrics at chosen epochs, from both engines, through shards,
merge and archive, on tiny real digits builds."""

import h5py
import numpy as np
import pytest
import torch

from builders.batched import train_batched
from builders.build import build
from builders.plan import make_plan, work_units
from builders.train import init_model, model_state, train_reference
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.verify import verify

from .helpers import archive_metadata, kill_and_resume, run_cli

# 2 tasks x {dense, STR} x 2 seeds, 3 epochs, checkpoints at the init, after epoch 1 and at the end.
CKPT = ["seeds=2", "tasks.count=2", "epochs=3", "unit_size=2", "checkpoints=[0, 1, 3]", 'grid.family=["dense", "str"]']
EPOCHS = [0, 1, 3]


@pytest.fixture(scope="session")
def ckpt_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "ckpt.h5"
    build(load_preset("digits500", CKPT), out, jobs=1, progress=False)
    return out


def _checkpoint_arrays(path):
    """Every checkpoint array of an archive and its /checkpoints table, as bytes."""
    with h5py.File(path, "r") as f:
        out = {"table": f["checkpoints"][()].tobytes(), "epochs": f.attrs["checkpoint_epochs"].tolist()}
        f.visititems(
            lambda name, node: (
                out.__setitem__(name, node[()].tobytes())
                if name.endswith("checkpoints") and isinstance(node, h5py.Dataset)
                else None
            )
        )
    return out


def test_checkpoints_are_stored_and_equal_the_curves_and_final_metrics(ckpt_archive, opened):
    ms = opened(ckpt_archive)
    m, c = ms.models, ms.checkpoints
    assert ms.checkpoint_epochs == EPOCHS
    assert list(c.columns) == ["model", "epoch", "train_acc", "train_loss", "test_acc", "test_loss"]
    assert c["model"].tolist() == np.repeat(m["id"], 3).tolist() and c["epoch"].tolist() == EPOCHS * len(m)
    by = c.set_index(["model", "epoch"])
    for name in ("test_acc", "test_loss"):
        curve = ms.curves(name)
        for e in (1, 3):  # after epoch e: the curve's value at index e - 1, exactly
            assert (by.xs(e, level="epoch")[name].to_numpy() == curve[:, e - 1].astype(np.float64)).all(), name
    for name in ("train_acc", "train_loss", "test_acc", "test_loss"):  # the last epoch is the final state
        assert (by.xs(3, level="epoch")[name].to_numpy() == m[name].to_numpy()).all(), name
    assert ms.params(epoch=3).tobytes() == ms.params().tobytes()
    assert not np.array_equal(ms.params(epoch=0), ms.params(epoch=1))
    # at the init every model is at chance: 3 classes
    assert by.xs(0, level="epoch")["test_acc"].between(0.2, 0.5).all()
    for i in m.index[m.family == "str"]:
        final, first = ms.family_state_dict(int(i)), ms.family_state_dict(int(i), epoch=1)
        assert final.keys() == first.keys() and any("s" == k.split(".")[-1] for k in final)
        assert all(torch.equal(final[k], ms.family_state_dict(int(i), epoch=3)[k]) for k in final)
    with h5py.File(ckpt_archive, "r") as f:
        d = f["architectures/small_cnn/checkpoints"]
        assert d.shape == (len(m), 3, 4851) and d.chunks[1:] == (1, 4851) and d.compression == "gzip"
    assert verify(ckpt_archive) == []


def test_rebuilt_models_reproduce_their_checkpoint_accuracy(ckpt_archive, opened):
    ms = opened(ckpt_archive)
    by = ms.checkpoints.set_index(["model", "epoch"])
    for family, g in ms.models.groupby("family"):
        row = g.iloc[-1]
        for split in ("test", "train"):
            x, y = ms.task_data(row.task, split)
            for e in EPOCHS:
                with torch.no_grad():
                    acc = (ms.model(int(row.id), epoch=e)(x).argmax(1) == y).float().mean().item()
                assert acc == by.loc[(row.id, e), f"{split}_acc"], (family, split, e)


@pytest.mark.parametrize("family", ["dense", "str"])
def test_epoch_0_is_the_init_and_the_engines_agree(family):
    """SGD (the tight tolerance of tests/test_batched.py): batched checkpoints equal the reference
    loop's; at epoch 0 both are the init, bit for bit."""
    unit = work_units(
        make_plan(
            load_preset(
                "digits500",
                [
                    "seeds=2",
                    "tasks.count=2",
                    "unit_size=4",
                    "epochs=2",
                    "optimizer=sgd",
                    "lr=0.01",
                    "checkpoints=[0, 1, 2]",
                    f"family={family}",
                ],
            )
        )
    )[0]
    batched, ref = train_batched(unit), [train_reference(e) for e in unit]
    for e, b, r in zip(unit, batched, ref):
        init, own = model_state(init_model(e), family)
        for res in (b, r):
            assert res.checkpoints.params[0].tobytes() == init.tobytes()
            if own is not None:
                assert res.checkpoints.family_params[0].tobytes() == own.tobytes()
            assert res.checkpoints.params[-1].tobytes() == res.params.tobytes()
        rel = np.linalg.norm(b.checkpoints.params - r.checkpoints.params) / np.linalg.norm(r.checkpoints.params)
        assert rel <= 1e-6, rel
        assert np.abs(b.checkpoints.metrics - r.checkpoints.metrics).max() <= 1e-5
        if own is not None:
            assert np.allclose(b.checkpoints.family_params, r.checkpoints.family_params, rtol=0, atol=1e-6)


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_recording_checkpoints_leaves_training_unchanged(engine):
    plain, kept = (
        work_units(
            make_plan(
                load_preset(
                    "digits500", ["seeds=2", "tasks.count=1", "unit_size=2", "epochs=2", f"engine={engine}", *extra]
                )
            )
        )[0]
        for extra in ([], ["checkpoints=[0, 2]"])
    )
    train = train_batched if engine == "batched" else (lambda u: [train_reference(e) for e in u])
    for a, b in zip(train(plain), train(kept)):
        assert a.checkpoints is None and b.checkpoints.params.shape == (2, 4851)
        assert a.params.tobytes() == b.params.tobytes()
        assert all(np.array_equal(a.curves[k], b.curves[k], equal_nan=True) for k in a.curves)
        # the final train split evaluation is the last checkpoint's, in smaller chunks (batched): other rounding
        assert a.metrics["train_acc"] == b.metrics["train_acc"]
        assert abs(a.metrics["train_loss"] - b.metrics["train_loss"]) <= 1e-6 * a.metrics["train_loss"]


def test_bit_identical_whatever_jobs(ckpt_archive, tmp_path):
    other = tmp_path / "jobs2.h5"
    build(load_preset("digits500", CKPT), other, jobs=2, progress=False)
    assert _checkpoint_arrays(other) == _checkpoint_arrays(ckpt_archive)
    assert archive_metadata(other) == archive_metadata(ckpt_archive)


@pytest.mark.parametrize("failpoint, trained_before", [("train:3", 2), ("merge:2", 4)])
def test_killed_build_resumes_to_the_same_checkpoints(ckpt_archive, tmp_path, failpoint, trained_before):
    out = tmp_path / "zoo.h5"
    r = kill_and_resume(out, CKPT, failpoint=failpoint)
    assert f"{2 * trained_before} already trained" in r.resumed.stderr
    assert _checkpoint_arrays(out) == _checkpoint_arrays(ckpt_archive)
    assert archive_metadata(out) == archive_metadata(ckpt_archive)


def test_verify_catches_a_damaged_checkpoint(ckpt_archive, tmp_path):
    for node in ("architectures/small_cnn/checkpoints", "architectures/small_cnn/families/str/checkpoints"):
        bad = tmp_path / "bad.h5"
        bad.write_bytes(ckpt_archive.read_bytes())
        with h5py.File(bad, "r+") as f:
            f[node][1, 1, 7] += 1e-3
        problems = verify(bad)
        assert len(problems) == 1 and "checkpoint checksum mismatch (epoch index 1, row 1" in problems[0], problems
    with h5py.File(bad, "r+") as f:
        del f["checkpoints"]
    # and the epoch split now points at checkpoint rows that are gone
    assert sorted(verify(bad)) == [
        f"/splits/epoch/{p} refers to a checkpoint row but the archive has none" for p in ("test", "train")
    ] + ["checkpoints are incomplete: root attribute 'checkpoint_epochs' and /checkpoints go together"]


def test_an_epoch_not_stored_is_a_clear_error(ckpt_archive, small_archive, opened):
    ms = opened(ckpt_archive)
    for call in (
        lambda: ms.params(epoch=2),
        lambda: ms.params([0], epoch=2),
        lambda: ms.model(0, epoch=2),
        lambda: ms.family_state_dict(int(ms.models.index[ms.models.family == "str"][0]), epoch=2),
    ):
        with pytest.raises(ModelsetError, match=r"epoch 2 is not a stored checkpoint \(stored epochs: 0, 1, 3\)"):
            call()
    plain = opened(small_archive)
    assert plain.checkpoint_epochs == [] and plain.checkpoints.empty
    assert list(plain.checkpoints.columns) == list(ms.checkpoints.columns)
    with pytest.raises(ModelsetError, match="this archive stores no checkpoints"):
        plain.state_dict(0, epoch=0)


def test_no_checkpoints_keeps_the_plan_hash_and_the_archive(tmp_path):
    """`checkpoints = []` is the preset without the key: same text, plan and shard hashes, and an
    archive with no checkpoint node or attribute."""
    base = tmp_path / "base.toml"
    base.write_text('name = "p"\nseeds = 1\nunit_size = 1\n[tasks]\ncount = 2\n[train]\nepochs = 1\n')
    empty = tmp_path / "empty.toml"
    empty.write_text(base.read_text().replace("seeds = 1\n", "seeds = 1\ncheckpoints = []\n"))
    a, b = load_preset(str(base)), load_preset(str(empty))
    assert a.text == b.text and "checkpoints" not in a.text
    pa, pb = make_plan(a), make_plan(b)
    assert pa.hash == pb.hash and [pa.unit_hash(u) for u in work_units(pa)] == [pb.unit_hash(u) for u in work_units(pb)]
    assert all("checkpoints" not in e.key() for e in pa.entries)
    kept = make_plan(load_preset(str(base), ["checkpoints=[0]"]))
    assert kept.hash != pa.hash and not {kept.unit_hash(u) for u in work_units(kept)} & {
        pa.unit_hash(u) for u in work_units(pa)
    }
    out = tmp_path / "empty.h5"
    build(b, out, progress=False)
    with h5py.File(out, "r") as f:
        assert "checkpoints" not in f and "checkpoint_epochs" not in f.attrs and f.attrs["plan_hash"] == pa.hash
        assert not [n for n in f["architectures/small_cnn"] if "checkpoint" in n]


@pytest.mark.parametrize(
    "value, message",
    [
        ("[1, 1]", "checkpoints must list each epoch once"),
        ("[-1, 2]", "checkpoints must be epochs >= 0 (0: the initial weights)"),
        ("[0, 30]", "checkpoints: epoch 30 is past the 25 epochs some models train"),
        ("[1.5]", "checkpoints must be a list of whole epochs"),
        ("3", "checkpoints must be a list of whole epochs"),
    ],
)
def test_bad_checkpoints_are_one_line_errors(value, message, tmp_path):
    r = run_cli("build", "--preset", "digits500", "--out", tmp_path / "out" / "z.h5", "--set", f"checkpoints={value}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_checkpoints_are_not_a_grid_factor(tmp_path):
    with pytest.raises(ModelsetError, match="checkpoints are one list for the whole zoo") as e:
        load_preset("digits500", ["grid.checkpoints=[[0], [1]]"])
    assert "\n" not in str(e.value)
    f = tmp_path / "g.toml"
    f.write_text('name = "g"\n[grid]\ncheckpoints = [[0], [1]]\n')
    with pytest.raises(ModelsetError, match="grid.checkpoints: checkpoints are one list for the whole zoo"):
        load_preset(str(f))
    with pytest.raises(ModelsetError, match="epoch 5 is past the 4 epochs"):  # a grid point trains fewer epochs
        load_preset("digits500", ["checkpoints=[5]", "grid.epochs=[4, 8]"])


def test_digits_sweep_plan_and_a_small_build(tmp_path, opened):
    """digits-sweep: >= 2,000 models; every work unit is one batched pass; a cut-down build (the
    full grid's structure, fewer values) builds, verifies and splits by task and seed."""
    preset = load_preset("digits-sweep")
    plan = make_plan(preset)
    assert (
        len(plan.entries) >= 2000 and preset.checkpoints[0] == 0 and preset.checkpoints[-1] == preset["train"]["epochs"]
    )
    assert {e.engine for e in plan.entries} == {"batched"}
    for unit in work_units(plan):
        assert len({(e.hparams["optimizer"], e.hparams["activation"]) for e in unit}) == 1
    out = tmp_path / "sweep.h5"
    small = [
        "tasks.count=2",
        "epochs=2",
        "checkpoints=[0, 2]",
        "grid.lr=[0.0003, 0.03]",
        'grid.init=["default"]',
        "grid.weight_decay=[0.0]",
        "unit_size=8",
    ]
    build(load_preset("digits-sweep", small), out, jobs=1, progress=False)
    assert verify(out) == []
    ms = opened(out)
    m = ms.models
    assert len(m) == 2 * 2 * 2 * 2 * 2 and ms.checkpoint_epochs == [0, 2]
    for part in ("task_id", "retrieval"):  # every model in exactly one part
        assert sorted(np.concatenate(list(ms.split(part).values()))) == list(range(len(m)))
    # models of one task and seed share their init across the grid points
    init = ms.params(epoch=0)
    for _, g in m.groupby(["task", "seed"]):
        assert all((init[r] == init[g.row.iloc[0]]).all() for r in g.row)
    assert "checkpoints: epochs 0, 2 of every model" in ms.summary()
