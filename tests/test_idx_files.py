"""The MNIST family as distributed: four IDX files, gzipped or extracted, in torchvision's layout or
directly in the data directory. A dataset is its decoded content: every container of the same
images gives the same fingerprint, plan and archive; a file that is not the dataset is one line.
"""

import gzip
import os
import shutil

import h5py
import numpy as np
import pytest

from builders.build import build, train_unit
from builders.plan import make_plan, work_units
from modelset.cli import main
from modelset.datasets import DATA_ENV, load_dataset
from modelset.errors import ModelsetError
from modelset.preset import load_preset

from .datafiles import gzip_file, idx_bytes, write_idx, write_mnist_family
from .helpers import run_cli

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SMALL = ["seeds=2", "tasks.count=2", "epochs=1", "unit_size=2"]


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    """One set of Fashion-MNIST-format files in four containers."""
    base = tmp_path_factory.mktemp("containers")
    write_mnist_family(base / "extracted", "FashionMNIST")  # torchvision's layout, extracted
    raw = base / "extracted" / "FashionMNIST" / "raw"
    tv_gz = base / "torchvision-gz" / "FashionMNIST" / "raw"  # torchvision's layout, only the downloads
    flat_gz = base / "flat-gz"  # a distribution's package: four .gz files, no name in the gzip header
    mixed = base / "flat-mixed"  # some extracted, some gzipped
    for d in (tv_gz, flat_gz, mixed):
        d.mkdir(parents=True)
    for i, f in enumerate(FILES):
        gzip_file(raw / f, tv_gz / f"{f}.gz", name_in_header=True)
        gzip_file(raw / f, flat_gz / f"{f}.gz", name_in_header=False)
        if i % 2:
            shutil.copy(raw / f, mixed / f)
        else:
            gzip_file(raw / f, mixed / f"{f}.gz", name_in_header=False)
    assert (tv_gz / f"{FILES[0]}.gz").read_bytes() != (flat_gz / f"{FILES[0]}.gz").read_bytes()
    return {
        "extracted": base / "extracted",
        "torchvision-gz": base / "torchvision-gz",
        "flat-gz": flat_gz,
        "flat-mixed": mixed,
    }


def test_every_container_gives_the_same_dataset_and_plan(containers):
    preset = load_preset("fashion-mnist500", SMALL)
    datasets = {k: load_dataset("fashion-mnist", root=d) for k, d in containers.items()}
    ref = datasets["extracted"]
    for name, ds in datasets.items():
        assert ds.fingerprint == ref.fingerprint, name
        np.testing.assert_array_equal(ds.images, ref.images)
        np.testing.assert_array_equal(ds.labels, ref.labels)
    hashes = {k: make_plan(preset, data_root=d).hash for k, d in containers.items()}
    assert len(set(hashes.values())) == 1, hashes


def test_every_container_gives_a_bit_identical_archive(containers, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.delenv(DATA_ENV, raising=False)
    preset = load_preset("fashion-mnist500", SMALL)
    blobs = {}
    for name in ("extracted", "flat-gz"):
        out = tmp_path / f"{name}.h5"
        build(preset, out, jobs=1, progress=False, data_root=containers[name])
        blobs[name] = out.read_bytes()
    assert blobs["extracted"] == blobs["flat-gz"]


def test_the_data_directory_is_an_argument_not_the_environment(containers, tmp_path, monkeypatch):
    """Worker processes get the directory as an argument: the build sets no environment variable,
    and an in-process cache never hands one directory's data to another's build."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert (
        main(
            [
                "build",
                "--preset",
                "fashion-mnist500",
                "--data-root",
                str(containers["flat-gz"]),
                "--out",
                str(tmp_path / "a.h5"),
                "--jobs",
                "2",
                "--no-progress",
                *[a for s in SMALL for a in ("--set", s)],
            ]
        )
        == 0
    )
    assert DATA_ENV not in os.environ
    other = tmp_path / "other"
    write_mnist_family(other, "FashionMNIST", seed=10)
    unit = work_units(make_plan(load_preset("fashion-mnist500", SMALL), data_root=other))[0]
    _, mine = train_unit(unit, "cpu", containers["extracted"])
    _, theirs = train_unit(unit, "cpu", other)
    assert not np.array_equal(mine[0].params, theirs[0].params)  # each unit read its own directory
    assert (
        load_dataset("fashion-mnist", other).fingerprint
        != load_dataset("fashion-mnist", containers["extracted"]).fingerprint
    )


def _damaged(src: str, tmp_path, damage) -> tuple:
    """A copy of the flat .gz files with one file damaged; returns (root, damaged path)."""
    root = tmp_path / "damaged"
    shutil.copytree(src, root)
    return root, damage(root)


def _gz(path, data: bytes):
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def _corrupt_stream(root):
    p = root / "train-images-idx3-ubyte.gz"
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the deflate stream: bad data or a CRC mismatch
    p.write_bytes(bytes(blob))
    return p


def _truncated_gz(root):
    p = root / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-40])
    return p


def _wrong_magic(root):
    return _gz(root / "train-labels-idx1-ubyte.gz", b"\x08\x03\0\0" + bytes(100))


def _labels_as_images(root):
    """An images file that holds labels (1 dimension): the files were swapped or renamed."""
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return _gz(root / "t10k-images-idx3-ubyte.gz", labels)


def _wrong_count(root):
    data = gzip.decompress((root / "train-images-idx3-ubyte.gz").read_bytes())
    return _gz(root / "train-images-idx3-ubyte.gz", data[: len(data) - 28 * 28 // 2])  # half an image short


def _wrong_shape(root):
    return _gz(root / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((80, 32, 32), np.uint8)))


def _label_count(root):
    return _gz(root / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(29, np.uint8)))


def _not_gzip(root):
    p = root / "train-labels-idx1-ubyte.gz"
    p.write_bytes(b"<html>404 Not Found</html>")
    return p


@pytest.mark.parametrize(
    "damage, message",
    [
        (_corrupt_stream, "corrupt gzip stream"),
        (_truncated_gz, "corrupt gzip stream"),
        (_not_gzip, "not a gzip file"),
        (_wrong_magic, "wrong magic number"),
        (_labels_as_images, "expected unsigned bytes (0x08) with 3 (images)"),
        (_wrong_count, "truncated or padded"),
        (_wrong_shape, "images of 32 x 32 pixels; Fashion-MNIST has 28 x 28"),
        (_label_count, "holds 30 test images but"),
    ],
)
def test_a_file_that_is_not_the_dataset_is_one_line_naming_it(damage, message, containers, tmp_path):
    root, bad = _damaged(containers["flat-gz"], tmp_path, damage)
    with pytest.raises(ModelsetError) as e:
        load_dataset("fashion-mnist", root=root)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(bad) in str(e.value) or str(bad).replace(".gz", "") in str(e.value), str(e.value)
    out = tmp_path / "out"
    r = run_cli(
        "build",
        "--preset",
        "fashion-mnist500",
        "--data-root",
        root,
        "--out",
        out / "zoo.h5",
        "--no-progress",
        "--set",
        "seeds=1",
        "--set",
        "tasks.count=1",
        "--set",
        "epochs=1",
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not out.exists()  # nothing written


def test_a_plain_file_is_read_whatever_its_name_and_a_raw_idx_file_beats_none(tmp_path):
    """A gzip stream is recognised by its magic bytes: an extracted file that kept no .gz name
    and a .gz file are both read; with a file missing in every form, the error lists both places."""
    root = tmp_path / "data"
    write_mnist_family(root, "FashionMNIST")
    raw = root / "FashionMNIST" / "raw"
    gzip_file(raw / FILES[0], raw / "tmp.gz")
    os.replace(raw / "tmp.gz", raw / FILES[0])  # gzipped content under the extracted name
    assert load_dataset("fashion-mnist", root=root).n_classes == 10
    (raw / FILES[1]).unlink()
    with pytest.raises(ModelsetError, match=f"files not found in {raw} or {root}.*missing {FILES[1]}"):
        load_dataset("fashion-mnist", root=root)


def test_write_idx_round_trips_through_the_reader(tmp_path):
    from modelset.datasets.idx import read_idx

    a = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "x", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "x", 3), a)
    gzip_file(tmp_path / "x", tmp_path / "x.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz", 3), a)
    with h5py.File(tmp_path / "not-idx.h5", "w"):
        pass
    with pytest.raises(ModelsetError, match="wrong magic number"):
        read_idx(tmp_path / "not-idx.h5", 1)
