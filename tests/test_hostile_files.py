"""Hostile archives: an HDF5 file from elsewhere (a download, a leaderboard submission) that tries
to make a reader copy other files on disk, exhaust memory, or slice outside its own matrices gets
one line naming what is wrong, never a traceback, never the other file's bytes."""

import gzip
import os
import shutil
import zlib

import h5py
import numpy as np
import pandas as pd
import pytest

import modelset
from modelset.archive import read_layout, table_to_struct
from modelset.cli import main
from modelset.errors import ModelsetError
from modelset.schema import encode_shape
from modelset.smallcnnzoo import CSV_SLACK
from modelset.verify import verify

from .test_smallcnnzoo import _write_zoo

SECRET = b"PRIVATE-KEY-BYTES"


def _copy(small_archive, tmp_path, change, name="hostile.h5"):
    out = tmp_path / name
    shutil.copy(small_archive, out)
    with h5py.File(out, "a") as f:
        change(f, tmp_path)
    return out


def _other_file(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.frombuffer(SECRET, np.uint8))
    return other


def _external_link(f, tmp_path):
    f["splits/extra"] = h5py.ExternalLink(str(_other_file(tmp_path)), "/secret")


def _external_storage(f, tmp_path):
    (tmp_path / "key.txt").write_bytes(SECRET)
    del f["relations"]
    f.create_dataset(
        "relations", shape=(len(SECRET),), dtype="u1", external=[(str(tmp_path / "key.txt"), 0, len(SECRET))]
    )


def _virtual_dataset(f, tmp_path):
    layout = h5py.VirtualLayout(shape=(len(SECRET),), dtype="u1")
    layout[:] = h5py.VirtualSource(str(_other_file(tmp_path)), "secret", shape=(len(SECRET),))
    f.create_virtual_dataset("curves/extra", layout)


def _never_written(f, tmp_path):  # 4 TB of fill values in a few hundred bytes
    f.create_dataset("curves/extra", shape=(10**6, 10**6), dtype="f4", chunks=(1000, 1000), compression="gzip")


@pytest.mark.parametrize(
    "change, message",
    [
        (_external_link, "external link"),
        (_external_storage, "external file"),
        (_virtual_dataset, "virtual dataset"),
        (_never_written, "far more than"),
    ],
)
def test_an_archive_reaching_outside_itself_or_promising_terabytes_is_refused(
    small_archive, tmp_path, capsys, change, message
):
    path = _copy(small_archive, tmp_path, change)
    with pytest.raises(ModelsetError, match=message):
        modelset.load(path)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and SECRET.decode() not in err


def _rewrite_layout(change):
    def fn(f, tmp_path):
        node = f"architectures/{list(f['architectures'])[0]}/layout"
        layout = read_layout(f[node])
        change(layout)
        del f[node]
        f.create_dataset(node, data=table_to_struct(layout.assign(shape=[encode_shape(s) for s in layout["shape"]])))

    return fn


def _set_model(column, value):
    def fn(f, tmp_path):
        m = f["models"][()]
        m[column][0] = value
        del f["models"]
        f.create_dataset("models", data=m)

    return fn


LAYOUTS = {
    "offset past the row": lambda d: d.__setitem__("offset", d["offset"].where(d.index != 1, 10**9)),
    "negative size": lambda d: d.__setitem__("size", d["size"].where(d.index != 0, -5)),
    "huge shape": lambda d: d.__setitem__("shape", [(10**6,) * 3, *d["shape"][1:]]),
}


@pytest.mark.parametrize("attack", sorted(LAYOUTS))
def test_a_layout_that_does_not_tile_the_rows_is_refused_and_verify_finds_it(small_archive, tmp_path, capsys, attack):
    path = _copy(small_archive, tmp_path, _rewrite_layout(LAYOUTS[attack]))
    with modelset.load(path) as ms:
        with pytest.raises(ModelsetError, match="layout entry"):
            ms.model(0)
        with pytest.raises(ModelsetError, match="layout entry"):
            ms.state_dict(1)
    assert main(["verify", str(path)]) == 1
    assert "layout" in capsys.readouterr().out


@pytest.mark.parametrize("row", [10**6, -3])
def test_a_model_row_outside_the_params_matrix_is_refused_not_read_from_elsewhere(small_archive, tmp_path, row):
    path = _copy(small_archive, tmp_path, _set_model("row", row))
    with modelset.load(path) as ms:
        for call in (lambda: ms.params([0]), lambda: ms.model(0)):
            with pytest.raises(ModelsetError, match="outside the 12 rows"):
                call()
    assert any("one-to-one" in p for p in verify(path))


@pytest.mark.parametrize("version", ["abc", np.arange(3)])
def test_a_format_version_that_is_not_a_number_is_one_line(small_archive, tmp_path, capsys, version):
    path = _copy(small_archive, tmp_path, lambda f, _: f.attrs.__setitem__("format_version", version))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no valid format_version" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "text", ["[[[[ = not toml", "grid = 5", "[grid]\nnot_a_column = [1, 2]\n[train]\nnot_a_column = 1\n"]
)
def test_a_preset_attribute_that_is_not_the_archives_own_is_one_line(small_archive, tmp_path, text):
    from modelset.protocols import grid_factors

    path = _copy(small_archive, tmp_path, lambda f, _: f.attrs.__setitem__("preset", text))
    with modelset.load(path) as ms, pytest.raises(ModelsetError, match="the archive is damaged"):
        grid_factors(ms)


# -- a Small CNN Zoo directory from elsewhere ------------------------------------------------------


def _import(zoo, out, capsys):
    code = main(["import", "small-cnn-zoo", str(zoo), "--out", str(out)])
    return code, capsys.readouterr().err


def _metrics(zoo, column, value, rows=1):
    m = pd.read_csv(zoo / "metrics.csv.gz")
    m[column] = m[column].astype(object)
    m.loc[: rows - 1, column] = value
    m.to_csv(zoo / "metrics.csv.gz", index=False)


def _gzip_bomb(zoo):
    """metrics.csv.gz of a few hundred KiB that inflates to more than the import's budget."""
    head = (zoo / "metrics.csv.gz").read_bytes()
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container
    with open(zoo / "metrics.csv.gz", "wb") as fh:
        fh.write(squeeze.compress(gzip.decompress(head).splitlines(True)[0]))
        chunk = b"0," * (1 << 19)
        for _ in range((CSV_SLACK + (zoo / "weights.npy").stat().st_size) // len(chunk) + 2):
            fh.write(squeeze.compress(chunk))
        fh.write(squeeze.flush())


def _link(target):
    def fn(zoo):
        os.remove(zoo / "layout.csv")
        os.symlink(target(zoo), zoo / "layout.csv")

    return fn


ZOO_ATTACKS = {
    "metrics gzip bomb": (_gzip_bomb, "decompresses to more than"),
    "layout a link out of the directory": (_link(lambda z: _outside(z)), "a link out of the directory"),
    "layout a link to /dev/zero": (_link(lambda z: "/dev/zero"), "not a regular file"),
    "a step promising a huge curve": (lambda z: _metrics(z, "step", 10**12), "steps 0..1000"),
    "a step that is not a number": (lambda z: _metrics(z, "step", "x"), "column step must hold whole numbers"),
    "an accuracy that is not a number": (
        lambda z: _metrics(z, "test_accuracy", "abc"),
        "test_accuracy must hold numbers",
    ),
    "a run without a name": (lambda z: _metrics(z, "modeldir", np.nan), "modeldir must hold a run name"),
    "a learning rate that is not a number": (
        lambda z: _metrics(z, "config.learning_rate", "abc", rows=3),
        "'abc', which is not a lr",
    ),
}


def _outside(zoo):
    outside = zoo.parent / "elsewhere.csv"
    outside.write_text("varname,start_idx,end_idx,size,shape\n")
    return outside


@pytest.mark.parametrize("attack", sorted(ZOO_ATTACKS))
def test_a_hostile_zoo_directory_is_one_line_and_an_existing_archive_survives(tmp_path, capsys, attack):
    damage, message = ZOO_ATTACKS[attack]
    _write_zoo(tmp_path / "zoo")
    damage(tmp_path / "zoo")
    out = tmp_path / "out" / "zoo.h5"
    out.parent.mkdir()
    out.write_bytes(b"an existing archive")
    code, err = _import(tmp_path / "zoo", out, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert os.listdir(out.parent) == ["zoo.h5"] and out.read_bytes() == b"an existing archive"


@pytest.mark.parametrize("name", ["weights.npy", "layout.csv"])
def test_an_import_never_writes_over_the_zoo_it_reads(tmp_path, capsys, name):
    _write_zoo(tmp_path / "zoo")
    before = (tmp_path / "zoo" / name).read_bytes()
    code, err = _import(tmp_path / "zoo", tmp_path / "zoo" / name, capsys)
    assert code == 2 and "a file of the zoo being imported" in err, err
    assert (tmp_path / "zoo" / name).read_bytes() == before


# -- a preset from elsewhere -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("seeds=1000000000000", "seeds must be at most"),
        ("epochs=1000000000000", "train.epochs must be a whole number in 1.."),
        ("batch_size=1000000000000", "train.batch_size must be a whole number in 1.."),
        ("tasks.classes_per_task=1000000000000", "tasks.classes_per_task must be in 2.."),
        ("seeds=100000", "the zoo would hold 5000000 models"),
    ],
)
def test_a_preset_asking_for_endless_work_is_refused_before_planning(tmp_path, capsys, monkeypatch, setting, message):
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--preset", "digits500", "--set", setting, "--jobs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("*"))


# -- dataset files from elsewhere ------------------------------------------------------------------


def test_an_idx_gzip_bomb_is_refused_before_it_is_inflated(tmp_path):
    from modelset.datasets.idx import MAX_BYTES, read_idx

    path = tmp_path / "train-images-idx3-ubyte.gz"
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:  # a header promising 60000 images, then far more zeros than any dataset
        fh.write(squeeze.compress(b"\0\0\x08\x03" + np.array([60000, 28, 28], ">u4").tobytes()))
        chunk = bytes(1 << 22)
        for _ in range(MAX_BYTES // len(chunk) + 1):
            fh.write(squeeze.compress(chunk))
        fh.write(squeeze.flush())
    assert path.stat().st_size < MAX_BYTES // 100
    with pytest.raises(ModelsetError, match="decompresses to more than"):
        read_idx(path, 3)


def _other_archive(f, tmp_path):  # a sound archive, but not the one the dataset was made from
    f.attrs["plan_hash"] = "0" * 40


@pytest.mark.parametrize(
    "change, message",
    [(_external_link, "external link"), (_virtual_dataset, "virtual dataset"), (_other_archive, "replaced")],
)
def test_a_dataset_reopening_its_archive_refuses_a_file_swapped_in_since(small_archive, tmp_path, change, message):
    path = tmp_path / "zoo.h5"
    shutil.copy(small_archive, path)
    ms = modelset.load(path)
    ds = modelset.WeightSpaceDataset(ms, "task_id", "train", "test_acc", layout="flat")
    os.replace(_copy(small_archive, tmp_path, change), path)  # before the first read reopens the path
    with pytest.raises(ModelsetError, match=message):
        ds[0]
    ms.close()
