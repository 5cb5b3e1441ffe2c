import h5py
import numpy as np
import pandas as pd
import pytest

import modelset
from builders.build import build
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.schema import param_checksum
from modelset.verify import verify

from .helpers import SMALL, run_cli


def test_tables_and_provenance(small_archive, opened):
    ms = opened(small_archive)
    m, t = ms.models, ms.tasks
    assert isinstance(m, pd.DataFrame) and len(m) == 12 and len(t) == 6
    for col in [
        "id",
        "arch",
        "family",
        "row",
        "task",
        "seed",
        "init_seed",
        "data_seed",
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "activation",
        "init",
        "train_acc",
        "train_loss",
        "test_acc",
        "test_loss",
        "checksum",
    ]:
        assert col in m.columns, col
    assert set(m["family"]) == {"dense"} and set(m["optimizer"]) == {"adam"}
    assert all(len(c) == 3 and list(c) == sorted(c) for c in t["classes"])
    assert ms.relations.shape == (6, 6)
    a = ms.attrs
    assert a["format"] == "modelset" and a["format_version"] == 2 and a["seed"] == 0
    assert 'name = "digits500"' in a["preset"] and "epochs = 3" in a["preset"]
    assert a["torch_version"] and a["python_version"] and a["modelset_version"] == modelset.__version__
    assert ms.curves("test_acc").shape == (12, 3)


def test_readable_with_plain_h5py(small_archive):
    with h5py.File(small_archive, "r") as f:
        models = f["models"][()]
        layout = f["architectures/small_cnn/layout"][()]
        params = f["architectures/small_cnn/params"]
        assert params.chunks[1] == params.shape[1] and params.compression == "gzip"
        assert layout["size"].sum() == params.shape[1] == 4851
        row = params[models["row"][5]]
        assert param_checksum(row) == models["checksum"][5].decode()
        w = row[layout["offset"][0] : layout["offset"][0] + layout["size"][0]].reshape(16, 1, 3, 3)
        assert layout["name"][0] == b"convs.0.weight" and np.isfinite(w).all()


def test_params_state_dict_and_lazy_reads(small_archive, opened):
    ms = opened(small_archive)
    every = ms.params()
    assert every.shape == (12, 4851) and every.dtype == np.float32
    picked = ms.params([7, 2, 7])
    np.testing.assert_array_equal(picked, every[ms.models.loc[[7, 2, 7], "row"]])
    sd = ms.state_dict(3)
    assert list(sd) == list(ms.layout("small_cnn")["name"])
    assert sd["convs.1.weight"].shape == (16, 16, 3, 3) and sd["head.weight"].shape == (3, 16)
    with pytest.raises(ModelsetError, match="unknown model id 99"):
        ms.params([99])


def test_splits_partition_models(small_archive, opened):
    ms = opened(small_archive)
    tid, ret = ms.split("task_id"), ms.split("retrieval")
    m = ms.models
    assert sorted(np.concatenate(list(tid.values()))) == list(range(12))
    assert sorted(np.concatenate(list(ret.values()))) == list(range(12))
    for _, g in m.groupby("task"):  # each task has a train seed and a held-out seed
        assert set(g.id) & set(tid["train"]) and set(g.id) & set(tid["test"])
    unseen = set(m.loc[ret["query"], "task"])
    assert unseen == set(m.loc[ret["gallery"], "task"]) and not unseen & set(m.loc[ret["train"], "task"])
    with pytest.raises(ModelsetError, match="unknown split"):
        ms.split("nope")


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_verify_passes_a_sound_archive_and_catches_corruption(small_archive, tmp_path):
    assert verify(small_archive) == []

    flipped = _copy(small_archive, tmp_path / "flipped.h5")
    with h5py.File(flipped, "r+") as f:
        f["architectures/small_cnn/params"][4, 100] += 1e-3
    assert any("model" in p and "checksum mismatch" in p for p in verify(flipped))

    wrong_row = _copy(small_archive, tmp_path / "row.h5")
    with h5py.File(wrong_row, "r+") as f:
        m = f["models"][()]
        m["row"][[0, 1]] = m["row"][[1, 0]]
        f["models"][...] = m
    assert any("checksum mismatch" in p for p in verify(wrong_row))

    missing = _copy(small_archive, tmp_path / "missing.h5")
    with h5py.File(missing, "r+") as f:
        del f["relations"]
    assert verify(missing) == ["missing /relations"]


def test_load_refuses_bad_files(small_archive, tmp_path):
    with pytest.raises(ModelsetError, match="no such archive"):
        modelset.load(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ModelsetError, match="not a readable HDF5 file"):
        modelset.load(junk)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ModelsetError, match="not a modelset archive"):
        modelset.load(tmp_path / "other.h5")
    newer = _copy(small_archive, tmp_path / "newer.h5")
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(ModelsetError, match="format v3 is newer"):
        modelset.load(newer)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(small_archive.read_bytes()[:50_000])
    with pytest.raises(ModelsetError, match="not a readable HDF5 file"):
        modelset.load(truncated)


def test_an_archive_of_the_previous_format_gets_a_version_message_and_is_rebuilt(small_archive, tmp_path):
    """v1 archives (before families: no /curves/groups, fewer /models columns) are named as such by
    load, verify and info, one line each, and the build rebuilds them rather than call them up to date."""
    old = _copy(small_archive, tmp_path / "old.h5")
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 1
        del f["curves/groups"]
    with pytest.raises(ModelsetError, match=r"format v1 is older than this modelset reads \(v2\); rebuild it"):
        modelset.load(old)
    for command in ("verify", "info"):
        r = run_cli(command, old)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "format v1 is older" in r.stderr, r.stderr
        assert "curves/groups" not in r.stdout + r.stderr
    report = build(load_preset("digits500", SMALL), old, jobs=1, progress=False)
    assert report["status"] == "built" and verify(old) == []
