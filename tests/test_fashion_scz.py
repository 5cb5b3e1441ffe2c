"""fashion-mnist-scz: the Small CNN Zoo's recipe on the real Fashion-MNIST files, built small here
(the command line's defaults, a few models, one epoch). Tests that need the files skip without them."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

import modelset
from builders.build import build
from modelset.preset import load_preset
from modelset.protocols import applicable
from modelset.verify import verify

from .helpers import run_cli

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_files = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"the real Fashion-MNIST files are not in {DEBIAN}: `apt-get install dataset-fashion-mnist`",
)


def test_the_preset_is_the_recipe():
    p = load_preset("fashion-mnist-scz")
    assert p["arch"] == "small_cnn_zoo" and p["tasks"]["count"] == 1 and p["tasks"]["classes_per_task"] == 10
    assert p["seeds"] >= 1000 and 0 in p.checkpoints and {1, 2} <= set(p.checkpoints)
    sample = p["sample"]
    assert set(sample["optimizer"]["choice"]) == {"sgd", "adam", "rmsprop"}
    assert set(sample) == {
        "optimizer",
        "lr",
        "weight_decay",
        "dropout",
        "init",
        "init_std",
        "activation",
        "train_fraction",
    }
    text = tomllib.loads(p.text)  # the stored text holds the distributions the models were drawn from
    assert text["sample"] == sample


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("scz") / "scz.h5"
    sets = [a for s in ["seeds=24", "epochs=1", "checkpoints=[0, 1]", "unit_size=4"] for a in ("--set", s)]
    sets += ["--set", "sample.train_fraction={choice=[0.01, 0.02]}"]
    r = run_cli("build", "--preset", "fashion-mnist-scz", "--out", out, "--data-root", DEBIAN, "--no-progress", *sets)
    assert r.returncode == 0, r.stderr
    return out


@needs_files
def test_a_small_build_verifies_and_holds_the_sampled_recipe(tiny):
    assert verify(tiny) == []
    with modelset.load(tiny) as ms:
        m = ms.models
        assert len(ms.tasks) == 1 and ms.tasks["n_classes"].tolist() == [10] and len(m) == 24
        for key in ("optimizer", "lr", "weight_decay", "dropout", "init", "init_std", "activation", "train_fraction"):
            assert m[key].nunique() > 1, key
        assert m["lr"].between(0.0005, 0.05).all() and m["dropout"].between(0, 0.7).all()
        assert set(m["train_fraction"]) == {0.01, 0.02}
        assert ms.checkpoint_epochs == [0, 1]
        assert [p.name for p in applicable(ms)][:2] == ["accuracy", "gap"] and "hparams" in [
            p.name for p in applicable(ms)
        ]
        assert m["test_acc"].max() > 0.5  # some models learn in one epoch of 600 images


def test_diverged_runs_enter_no_split(tmp_path):
    """Runs whose weights end non-finite stay in the archive but are scored on by no protocol."""
    out = tmp_path / "div.h5"
    preset = load_preset(
        "digits500",
        [
            "tasks.classes_per_task=10",
            "tasks.count=1",
            "seeds=12",
            "epochs=1",
            "unit_size=12",
            "optimizer=sgd",
            "sample.lr={loguniform=[0.01, 1e6]}",
        ],
    )
    build(preset, out, jobs=1, progress=False)
    assert verify(out) == []
    with modelset.load(out) as ms:
        finite = np.isfinite(ms.params(ms.models["id"].to_numpy())).all(1)
        assert 0 < finite.sum() < len(finite)
        in_splits = np.concatenate(list(ms.split("task_id").values()))
        assert sorted(in_splits) == sorted(np.flatnonzero(finite))
