"""Reading the file-based datasets from tiny files in their real formats (tests/datafiles.py), as
torchvision reads them, and the one-line errors for missing and wrong files.

torchvision publishes MD5 sums for the CIFAR and SVHN files and modelset always checks them, so tiny
files fail the check, as they should (``test_published_checksums_are_checked_by_default``). Tests
that read them substitute their own files' sums for the published ones (the ``trust`` fixture in
conftest.py patches ``published_md5``): the check itself still runs on every read.
"""

import collections
import os
import shutil

import numpy as np
import pytest
import scipy.io

from modelset.datasets import DATA_ENV, load_dataset
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.tasks import make_tasks, relation_matrix

from .datafiles import CIFAR100_COARSE, CIFAR100_NAMES, CIFAR100_SUPER, MNIST_FAMILY
from .helpers import TINY, run_cli

ALL = [*MNIST_FAMILY, "cifar10", "cifar100", "svhn"]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _torchvision_reads(name, root, monkeypatch):
    """(train x, train y, test x, test y, classes) as torchvision's own dataset classes read the files,
    with their MD5 check switched off here (only here) because the tiny files are not the real ones."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tvcifar

    monkeypatch.setattr(tvcifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
    out = []
    for train in (True, False):
        if name in MNIST_FAMILY:
            ds = getattr(tvd, MNIST_FAMILY[name])(root, train=train)
            x, y = ds.data.numpy()[:, None], ds.targets.numpy()
        elif name == "svhn":
            ds = tvd.SVHN(root / "SVHN", split="train" if train else "test")
            x, y = ds.data, ds.labels
        else:
            ds = (tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100)(root, train=train)
            x, y = ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets)
        out += [x, y]
    return (*out, getattr(ds, "classes", None))


# -- reading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_each_dataset_reads_as_torchvision_reads_it(name, data_root, trust, monkeypatch):
    trust(data_root)
    ds = load_dataset(name, root=data_root)
    xtr, ytr, xte, yte, classes = _torchvision_reads(name, data_root, monkeypatch)
    assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int64 and ds.test.dtype == bool
    assert ds.images.shape == (len(ytr) + len(yte), *xtr.shape[1:])
    assert ds.test.tolist() == [False] * len(ytr) + [True] * len(yte)  # train first, then the test split
    np.testing.assert_array_equal(ds.labels, np.concatenate([ytr, yte]))
    # Standardised per channel with the train split's statistics, and the string says so.
    train = xtr.astype(np.float64)
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    expected = (np.concatenate([xtr, xte]) - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(ds.images, expected, rtol=1e-5, atol=1e-5)
    assert ds.normalization.startswith("per channel (pixel - mean) / std") and f"{mean[0]:.6g}" in ds.normalization
    if classes is not None and name not in ("mnist", "svhn"):
        assert list(ds.class_names) == list(classes)
    assert len(ds.class_names) == (100 if name == "cifar100" else 10)


def test_svhn_zero_is_class_0_and_mnist_names_are_digits(data_root, trust):
    trust(data_root)
    svhn = load_dataset("svhn", root=data_root)
    y = scipy.io.loadmat(data_root / "SVHN" / "train_32x32.mat")["y"].ravel()
    np.testing.assert_array_equal(svhn.labels[~svhn.test], np.where(y == 10, 0, y))
    assert svhn.class_names == load_dataset("mnist", root=data_root).class_names == tuple("0123456789")


def test_cifar100_superclasses_come_from_the_coarse_labels(data_root, trust):
    trust(data_root)
    ds = load_dataset("cifar100", root=data_root)
    assert list(ds.superclasses) == CIFAR100_COARSE and list(ds.superclass_names) == CIFAR100_SUPER
    assert list(ds.class_names) == CIFAR100_NAMES


def test_modelset500_tasks_are_the_pairs_2r_2r1_with_graded_superclass_relations(data_root, trust):
    trust(data_root)
    preset = load_preset("modelset500-cifar100")
    tasks = make_tasks(preset["tasks"], load_dataset("cifar100", root=data_root), preset["seed"])
    assert [t.classes for t in tasks] == [(2 * r, 2 * r + 1) for r in range(50)]
    assert tasks[0].name == "apple-aquarium_fish"
    r = relation_matrix(tasks, "superclass")
    np.testing.assert_array_equal(np.diag(r), 1)
    np.testing.assert_array_equal(r, r.T)
    levels = collections.Counter(r[np.triu_indices(50, 1)].tolist())
    assert levels == {0.0: 1044, 0.25: 165, 0.375: 9, 0.5: 7}
    # beaver-bed vs orchid-otter: only beaver and otter share a superclass (aquatic mammals)
    assert (tasks[2].name, tasks[27].name) == ("beaver-bed", "orchid-otter") and r[2, 27] == 0.25


def test_superclass_relation_needs_superclasses(data_root):
    ds = load_dataset("digits")
    with pytest.raises(ModelsetError, match="needs a dataset with superclasses"):
        make_tasks(
            {"classes_per_task": 2, "count": 2, "classes": [], "select": "consecutive", "relation": "superclass"}, ds, 0
        )
    with pytest.raises(ModelsetError, match="tasks.count=6 is impossible with tasks.select='consecutive'"):
        make_tasks({"classes_per_task": 2, "count": 6, "classes": [], "select": "consecutive"}, ds, 0)


# -- missing and wrong files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, name, where",
    [
        ("modelset500-cifar100", "cifar100", "cifar-100-python"),
        ("mnist500", "mnist", "MNIST/raw"),
        ("fashion-mnist500", "fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_missing_files_are_one_line_naming_dataset_directory_and_remedy(preset, name, where, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    out = tmp_path / "zoo.h5"
    r = run_cli("build", "--preset", preset, "--data-root", empty, "--out", out, *TINY, data_env=None)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"modelset: error: dataset '{name}'")
    assert str(empty / where) in r.stderr and "download=True" in r.stderr and "--download" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["data"] and not os.listdir(empty)  # nothing written anywhere


def test_no_data_directory_at_all_is_one_line(tmp_path):
    r = run_cli("build", "--preset", "modelset500-cifar100", "--out", tmp_path / "zoo.h5", *TINY, data_env=None)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no data directory is set" in r.stderr and "--data-root" in r.stderr and DATA_ENV in r.stderr
    assert not os.listdir(tmp_path)


def test_published_checksums_are_checked_by_default(data_root, tmp_path):
    """Tiny files are not the published CIFAR/SVHN files: a user's build refuses them, one line."""
    for name in ("cifar100", "cifar10", "svhn"):
        with pytest.raises(ModelsetError, match="does not match the MD5 sum torchvision publishes"):
            load_dataset(name, root=data_root)
    r = run_cli("build", "--preset", "modelset500-cifar100", "--out", tmp_path / "zoo.h5", *TINY, data_env=data_root)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "MD5" in r.stderr
    assert str(data_root / "cifar-100-python") in r.stderr and not os.listdir(tmp_path)


def test_a_file_changed_after_a_good_read_is_checked_again(data_root, trust, tmp_path):
    root = trust(_copy(data_root, tmp_path / "data"))
    assert load_dataset("cifar100", root=root).n_classes == 100
    path = root / "cifar-100-python" / "train"
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelsetError, match="cifar-100-python/train does not match the MD5"):
        load_dataset("cifar100", root=root)


def test_malformed_files_are_one_line_errors(data_root, trust, tmp_path):
    root = trust(_copy(data_root, tmp_path / "data"))
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ModelsetError, match="t10k-labels-idx1-ubyte: not an IDX file"):
        load_dataset("mnist", root=root)
    (root / "cifar-100-python" / "meta").write_bytes(b"garbage")
    trust(root)  # the garbage is "trusted": the format check still stops it
    with pytest.raises(ModelsetError, match="meta is not a CIFAR python batch"):
        load_dataset("cifar100", root=root)
