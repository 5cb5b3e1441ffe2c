"""Real datasets through torchvision's on-disk formats, with no network.

The tests write tiny files in each dataset's real format (IDX files for the MNIST family, pickled
python batches for CIFAR-10/100, MATLAB .mat files for SVHN) in torchvision's directory layout, then
read them, and build small zoos from them, through the code path users run.

torchvision publishes MD5 sums for the CIFAR and SVHN files and modelset always checks them, so tiny
files fail the check, as they should (``test_published_checksums_are_checked_by_default``). Tests
that read them substitute their own files' sums for the published ones (the ``trust`` fixture patches
``published_md5``): the check itself still runs on every read.
"""
import collections
import hashlib
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io
import torch

import modelset
import modelset.torchvision_sources as tvs
from builders.plan import make_plan
from modelset.augment import augment
from modelset.cli import main
from modelset.datasets import DATA_ENV, load_dataset
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.tasks import make_tasks, relation_matrix
from modelset.verify import verify

from .datafiles import CIFAR100_COARSE, CIFAR100_NAMES, CIFAR100_SUPER, MNIST_FAMILY, write_all, write_cifar100

ALL = [*MNIST_FAMILY, "cifar10", "cifar100", "svhn"]
TINY = ["--set", "seeds=1", "--set", "tasks.count=2", "--set", "epochs=2", "--no-progress"]

@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("datasets"))


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def trust(monkeypatch):
    """trust(root): accept the files now in ``root`` in place of the ones torchvision publishes
    sums for. Only the expected sums change; every read still checks its files against them."""
    trusted = {}
    published = tvs.published_md5

    def test_sums(name):
        return trusted.get(name, published(name))

    def trust_root(root):
        for name in ("cifar10", "cifar100", "svhn"):
            folder = root / tvs.LAYOUT[name].split("/{")[0]
            if folder.is_dir():
                trusted[name] = {f: _md5(folder / f) for f in published(name)}
        return root

    monkeypatch.setattr(tvs, "published_md5", test_sums)
    return trust_root


@pytest.fixture
def no_env(monkeypatch):
    """No $MODELSET_DATA from the caller's shell; restored (or removed again) after the test,
    also when the CLI, run in-process, sets it from --data-root."""
    monkeypatch.delenv(DATA_ENV, raising=False)


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
        make_tasks({"classes_per_task": 2, "count": 2, "classes": [], "select": "consecutive",
                    "relation": "superclass"}, ds, 0)
    with pytest.raises(ModelsetError, match="tasks.count=6 is impossible with tasks.select='consecutive'"):
        make_tasks({"classes_per_task": 2, "count": 6, "classes": [], "select": "consecutive"}, ds, 0)


# -- missing and wrong files ------------------------------------------------------------------------------

def _cli(*args, env_root=None):
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV}
    if env_root is not None:
        env[DATA_ENV] = str(env_root)
    return subprocess.run([sys.executable, "-m", "modelset.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**env, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("preset, name, where", [
    ("modelset500-cifar100", "cifar100", "cifar-100-python"),
    ("mnist500", "mnist", "MNIST/raw"),
    ("fashion-mnist500", "fashion-mnist", "FashionMNIST/raw"),
])
def test_missing_files_are_one_line_naming_dataset_directory_and_remedy(preset, name, where, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    out = tmp_path / "zoo.h5"
    r = _cli("build", "--preset", preset, "--data-root", empty, "--out", out, *TINY)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"modelset: error: dataset '{name}'")
    assert str(empty / where) in r.stderr and "download=True" in r.stderr and "--download" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["data"] and not os.listdir(empty)  # nothing written anywhere


def test_no_data_directory_at_all_is_one_line(tmp_path):
    r = _cli("build", "--preset", "modelset500-cifar100", "--out", tmp_path / "zoo.h5", *TINY)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no data directory is set" in r.stderr and "--data-root" in r.stderr and DATA_ENV in r.stderr
    assert not os.listdir(tmp_path)


def test_published_checksums_are_checked_by_default(data_root, tmp_path):
    """Tiny files are not the published CIFAR/SVHN files: a user's build refuses them, one line."""
    for name in ("cifar100", "cifar10", "svhn"):
        with pytest.raises(ModelsetError, match="does not match the MD5 sum torchvision publishes"):
            load_dataset(name, root=data_root)
    r = _cli("build", "--preset", "modelset500-cifar100", "--out", tmp_path / "zoo.h5", *TINY, env_root=data_root)
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


# -- building zoos from the files ---------------------------------------------------------------------------

def _reproduces(path, root):
    """Every model, rebuilt from the archive (BatchNorm in eval mode), gives its stored accuracies."""
    with modelset.load(path) as ms:
        for i, row in ms.models.iterrows():
            for split in ("train", "test"):
                x, y = ms.task_data(row.task, split, root=root)
                with torch.no_grad():
                    acc = (ms.model(i)(x).argmax(1) == y).float().mean().item()
                assert acc == pytest.approx(row[f"{split}_acc"], abs=1e-6), (i, split)


def test_tiny_modelset500_cifar100_zoo(data_root, trust, tmp_path, no_env):
    trust(data_root)
    out = tmp_path / "ms500.h5"
    assert main(["build", "--preset", "modelset500-cifar100", "--data-root", str(data_root), "--out", str(out),
                 "--set", "lr_step_size=1", *TINY]) == 0
    assert verify(out) == []
    with modelset.load(out) as ms:
        m = ms.models
        assert len(m) == 2 and m["arch"].tolist() == ["vgg4_bn"] * 2 and ms.tasks["name"].tolist() == [
            "apple-aquarium_fish", "baby-bear"]
        assert m["augment"].tolist() == ["crop_flip"] * 2 and m["optimizer"].tolist() == ["sgd"] * 2
        lay = ms.layout("vgg4_bn")
        buffers = lay.loc[~lay["trainable"], "name"].tolist()
        assert "blocks.0.bn.running_mean" in buffers and "blocks.3.bn.running_var" in buffers
        assert lay.loc[lay["trainable"], "size"].sum() == 389_410 and m["n_params"].iloc[0] == 390_374
        with h5py.File(out) as f:
            assert f["relations"].attrs["kind"] == "superclass"
            assert f["relations"].attrs["definition"].startswith("superclass:")
            assert f["dataset"].attrs["superclasses"].tolist() == CIFAR100_COARSE
            assert f["dataset"].attrs["input_shape"].tolist() == [3, 32, 32]
        np.testing.assert_array_equal(ms.relations, [[1, 0], [0, 1]])  # apple-fish vs baby-bear: no superclass mates
        sd = ms.state_dict(0)
        assert sd["blocks.0.bn.num_batches_tracked"].item() == 2 * 1  # 2 epochs x 1 minibatch of 12 images
        assert not torch.equal(sd["blocks.0.bn.running_var"], torch.ones(32))  # trained statistics were stored
    _reproduces(out, data_root)


def test_tiny_mnist_zoo_from_the_environment_variable(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_root))  # no --data-root: $MODELSET_DATA
    out = tmp_path / "mnist.h5"
    assert main(["build", "--preset", "mnist500", "--out", str(out), *TINY]) == 0
    assert verify(out) == []
    with modelset.load(out) as ms:
        assert len(ms.models) == 2 and ms.attrs["dataset"] == "mnist"
        assert ms.h5["architectures/small_cnn_zoo"].attrs["in_channels"] == 1
        assert ms.h5["dataset"].attrs["input_shape"].tolist() == [1, 28, 28]
        assert ms.h5["relations"].attrs["kind"] == "jaccard"
    _reproduces(out, None)


def test_worker_processes_find_the_data_and_train_the_same_weights(data_root, tmp_path, no_env):
    """--data-root reaches joblib's worker processes (as an argument): --jobs 2 in a fresh
    process gives the bit-identical archive an in-process --jobs 1 build gives."""
    small = ["--set", "seeds=2", "--set", "tasks.count=2", "--set", "epochs=1", "--set", "unit_size=1",
             "--no-progress"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert main(["build", "--preset", "mnist500", "--data-root", str(data_root),
                 "--out", str(one), "--jobs", "1", *small]) == 0
    r = _cli("build", "--preset", "mnist500", "--data-root", data_root, "--out", two, "--jobs", "2", *small)
    assert r.returncode == 0, r.stderr
    with h5py.File(one) as a, h5py.File(two) as b:
        assert a["architectures/small_cnn_zoo/params"][()].tobytes() == b["architectures/small_cnn_zoo/params"][()].tobytes()
        assert a.attrs["plan_hash"] == b.attrs["plan_hash"]


def test_tiny_svhn_and_fashion_zoos_from_preset_files(data_root, trust, tmp_path, no_env):
    trust(data_root)
    f = tmp_path / "svhn.toml"
    f.write_text('name = "svhn-pairs"\ndataset = "svhn"\narch = "vgg4_bn"\n[tasks]\nclasses_per_task = 2\n'
                 'select = "consecutive"\n[train]\naugment = "crop"\nbatch_size = 16\n')
    for preset in (str(f), "fashion-mnist500"):
        out = tmp_path / "zoo.h5"
        assert main(["build", "--preset", preset, "--data-root", str(data_root), "--out", str(out), "--force",
                     *TINY]) == 0
        assert verify(out) == []
        _reproduces(out, data_root)


def test_download_passes_through_to_torchvision(data_root, tmp_path, monkeypatch, no_env, capsys):
    """--download calls torchvision's download (faked here: no network) into the data directory."""
    import torchvision.datasets as tvd

    calls = []

    def fake_download(self):
        calls.append(self.root)
        if not os.path.exists(self.raw_folder):
            shutil.copytree(data_root / "MNIST" / "raw", self.raw_folder)

    monkeypatch.setattr(tvd.MNIST, "download", fake_download)
    root = tmp_path / "fresh"
    out = tmp_path / "mnist.h5"
    assert main(["build", "--preset", "mnist500", "--data-root", str(root), "--download", "--out", str(out),
                 *TINY]) == 0
    assert calls and set(calls) == {str(root)} and (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert len(modelset.load(out).models) == 2

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: <urlopen error>")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    rc = main(["build", "--preset", "mnist500", "--data-root", str(tmp_path / "other"), "--download",
               "--out", str(tmp_path / "x.h5"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "could not download into" in err and "Error downloading" in err
    assert not (tmp_path / "x.h5").exists()


def test_archive_task_data_refuses_other_data_than_the_models_saw(data_root, trust, tmp_path, no_env):
    trust(data_root)
    out = tmp_path / "ms500.h5"
    assert main(["build", "--preset", "modelset500-cifar100", "--data-root", str(data_root), "--out", str(out),
                 "--set", "epochs=1", *TINY]) == 0
    other = tmp_path / "other"
    other.mkdir()
    write_cifar100(other, per_class=(7, 2))
    trust(other)
    with modelset.load(out) as ms, pytest.raises(ModelsetError, match="is not the data this archive's models saw"):
        ms.task_data(0, root=other)


# -- recipe: augmentation and the step schedule --------------------------------------------------------------

def test_augmentation_is_a_padded_crop_and_a_flip_drawn_from_the_generator():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    assert augment("none", x, g) is x and torch.equal(g.get_state(), before)  # draws nothing
    a = augment("crop_flip", x, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment("crop_flip", x, torch.Generator().manual_seed(5)))
    assert a.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    flips = augment("flip", x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(0))
    flipped = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    assert 20 < sum(flipped) < 80 and all(f or torch.equal(flips[i], x[i % 2]) for i, f in enumerate(flipped))


def test_step_schedule_and_augmentation_in_the_reference_loop(monkeypatch):
    import builders.train as bt

    seen = []
    make = bt.make_optimizer

    def recording(params, hp):
        opt = make(params, hp)
        step = opt.step

        def spy(*a, **k):
            seen.append(opt.param_groups[0]["lr"])
            return step(*a, **k)

        opt.step = spy
        return opt

    monkeypatch.setattr(bt, "make_optimizer", recording)
    preset = load_preset("digits500", ["seeds=1", "tasks.count=1", "epochs=3", "lr_step_size=1",
                                       "lr_gamma=0.5", "batch_size=512", "augment=crop"])
    entry = make_plan(preset).entries[0]
    a = bt.train_reference(entry)
    assert seen == pytest.approx([0.003, 0.0015, 0.00075])  # one minibatch per epoch; lr halves after 1 and 2
    assert np.array_equal(a.params, bt.train_reference(entry).params)  # augmented training is reproducible
    plain = bt.train_reference(make_plan(load_preset("digits500", ["seeds=1", "tasks.count=1", "epochs=3",
                                                                   "batch_size=512"])).entries[0])
    assert not np.array_equal(a.params, plain.params)


def test_digits500_recipe_gains_keys_that_change_nothing():
    train = load_preset("digits500")["train"]
    assert train["augment"] == "none" and train["lr_step_size"] == 0 and train["lr_gamma"] == 0.1


@pytest.mark.parametrize("override, message", [
    ("augment=cutout", "train.augment must be one of none, crop, flip, crop_flip"),
    ("lr_step_size=-1", "train.lr_step_size must be a whole number of epochs >= 0"),
    ("lr_step_size=[30]", "train.lr_step_size must be a whole number of epochs >= 0"),
    ("lr_gamma=0", "train.lr_gamma must be a number in (0, 1]"),
    ("tasks.select=random", "tasks.select must be one of balanced, consecutive"),
    ("tasks.relation=cosine", "tasks.relation must be one of jaccard, superclass"),
])
def test_new_preset_keys_are_validated(override, message):
    with pytest.raises(ModelsetError) as e:
        load_preset("modelset500-cifar100", [override])
    assert message in str(e.value)
