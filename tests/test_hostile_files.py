"""Hostile archives: an HDF5 file from elsewhere (a download, a leaderboard submission) that tries
to make a reader copy other files on disk, exhaust memory, or slice outside its own matrices gets
one line naming what is wrong, never a traceback, never the other file's bytes."""

import shutil

import h5py
import numpy as np
import pytest

import modelset
from modelset.archive import read_layout, table_to_struct
from modelset.cli import main
from modelset.errors import ModelsetError
from modelset.schema import encode_shape
from modelset.verify import verify

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
