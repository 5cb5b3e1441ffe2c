"""Small zoos built from tiny files of every file-based dataset, through the code path users run:
the CLI, preset files, worker processes, --download, and archives that refuse other data."""

import os
import shutil

import h5py
import numpy as np
import pytest
import torch

import modelset
from modelset.cli import main
from modelset.datasets import DATA_ENV
from modelset.errors import ModelsetError
from modelset.verify import verify

from .datafiles import CIFAR100_COARSE, write_cifar100
from .helpers import TINY, run_cli


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
    assert (
        main(
            [
                "build",
                "--preset",
                "modelset500-cifar100",
                "--data-root",
                str(data_root),
                "--out",
                str(out),
                "--set",
                "lr_step_size=1",
                *TINY,
            ]
        )
        == 0
    )
    assert verify(out) == []
    with modelset.load(out) as ms:
        m = ms.models
        assert (
            len(m) == 2
            and m["arch"].tolist() == ["vgg4_bn"] * 2
            and ms.tasks["name"].tolist() == ["apple-aquarium_fish", "baby-bear"]
        )
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
    small = ["--set", "seeds=2", "--set", "tasks.count=2", "--set", "epochs=1", "--set", "unit_size=1", "--no-progress"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert (
        main(["build", "--preset", "mnist500", "--data-root", str(data_root), "--out", str(one), "--jobs", "1", *small])
        == 0
    )
    r = run_cli(
        "build", "--preset", "mnist500", "--data-root", data_root, "--out", two, "--jobs", "2", *small, data_env=None
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(one) as a, h5py.File(two) as b:
        assert (
            a["architectures/small_cnn_zoo/params"][()].tobytes()
            == b["architectures/small_cnn_zoo/params"][()].tobytes()
        )
        assert a.attrs["plan_hash"] == b.attrs["plan_hash"]


def test_tiny_svhn_and_fashion_zoos_from_preset_files(data_root, trust, tmp_path, no_env):
    trust(data_root)
    f = tmp_path / "svhn.toml"
    f.write_text(
        'name = "svhn-pairs"\ndataset = "svhn"\narch = "vgg4_bn"\n[tasks]\nclasses_per_task = 2\n'
        'select = "consecutive"\n[train]\naugment = "crop"\nbatch_size = 16\n'
    )
    for preset in (str(f), "fashion-mnist500"):
        out = tmp_path / "zoo.h5"
        assert (
            main(["build", "--preset", preset, "--data-root", str(data_root), "--out", str(out), "--force", *TINY]) == 0
        )
        assert verify(out) == []
        _reproduces(out, data_root)


def test_download_passes_through_to_torchvision(data_root, tmp_path, monkeypatch, no_env, capsys, opened):
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
    assert (
        main(["build", "--preset", "mnist500", "--data-root", str(root), "--download", "--out", str(out), *TINY]) == 0
    )
    assert calls and set(calls) == {str(root)} and (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert len(opened(out).models) == 2

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: <urlopen error>")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    rc = main(
        [
            "build",
            "--preset",
            "mnist500",
            "--data-root",
            str(tmp_path / "other"),
            "--download",
            "--out",
            str(tmp_path / "x.h5"),
            *TINY,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "could not download into" in err and "Error downloading" in err
    assert not (tmp_path / "x.h5").exists()


def test_archive_task_data_refuses_other_data_than_the_models_saw(data_root, trust, tmp_path, no_env):
    trust(data_root)
    out = tmp_path / "ms500.h5"
    assert (
        main(
            [
                "build",
                "--preset",
                "modelset500-cifar100",
                "--data-root",
                str(data_root),
                "--out",
                str(out),
                "--set",
                "epochs=1",
                *TINY,
            ]
        )
        == 0
    )
    other = tmp_path / "other"
    other.mkdir()
    write_cifar100(other, per_class=(7, 2))
    trust(other)
    with modelset.load(out) as ms, pytest.raises(ModelsetError, match="is not the data this archive's models saw"):
        ms.task_data(0, root=other)
