"""A zoo from the real Fashion-MNIST files, as Debian's dataset-fashion-mnist package installs them
(the authors' four *-ubyte.gz files, directly in one directory). Skipped where they are absent."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import modelset
from builders.build import build
from builders.plan import make_plan
from modelset.datasets import load_dataset
from modelset.preset import load_preset
from modelset.tasks import make_tasks, relation_matrix
from modelset.verify import verify

from .datafiles import gzip_file

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
pytestmark = pytest.mark.skipif(
    not all((DEBIAN / f"{f}.gz").is_file() for f in FILES),
    reason=f"the real Fashion-MNIST files are not in {DEBIAN}: install them with "
    "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy the authors' four *-ubyte.gz there",
)
# Two tasks of fashion-mnist500, one easy and one of its hardest (three kinds of tops), 2 seeds, 1 epoch.
SMALL = ["seeds=2", "epochs=1", "unit_size=2", "tasks.classes=[[1, 7, 8], [0, 2, 6]]"]


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist", root=DEBIAN)


def test_the_real_files_are_read_in_full(fashion):
    assert fashion.images.shape == (70_000, 1, 28, 28) and fashion.test.sum() == 10_000
    assert np.bincount(fashion.labels[~fashion.test]).tolist() == [6000] * 10
    assert np.bincount(fashion.labels[fashion.test]).tolist() == [1000] * 10
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    # standardised by the train split's statistics
    assert abs(float(fashion.images[~fashion.test].mean())) < 1e-3
    assert float(fashion.images[~fashion.test].std()) == pytest.approx(1.0, abs=1e-3)


def test_the_categories_grade_the_relation_of_fashion_mnist500(fashion):
    preset = load_preset("fashion-mnist500")
    assert preset["tasks"]["relation"] == "superclass"
    tasks = make_tasks(preset["tasks"], fashion, preset["seed"])
    assert len(tasks) == 50 and np.bincount([c for t in tasks for c in t.classes]).tolist() == [15] * 10
    r = relation_matrix(tasks, "superclass")
    by_name = {t.name: t.id for t in tasks}
    names = [fashion.class_names[c] for c in range(10)]
    assert [names[c] for c in range(10) if fashion.superclasses[c] == 0] == [
        "T-shirt/top",
        "Pullover",
        "Dress",
        "Coat",
        "Shirt",
    ]
    assert fashion.superclass_names == ("tops", "trousers", "footwear", "bags")
    levels = sorted(set(np.round(r[np.triu_indices(50, 1)], 4).tolist()))
    assert levels[0] == 0 and len(levels) >= 5, levels  # graded, not just class overlap
    some = next(iter(by_name))
    assert r[by_name[some], by_name[some]] == 1


def test_a_small_zoo_from_the_distributed_files(tmp_path, fashion, monkeypatch):
    """Built from Debian's gz files and from an extracted torchvision layout of them (and a gzip
    with a file name in its header, as the authors' downloads): the same fingerprint, plan and bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    tv = tmp_path / "tv" / "FashionMNIST" / "raw"
    named = tmp_path / "named"
    tv.mkdir(parents=True)
    named.mkdir()
    for f in FILES:
        with gzip.open(DEBIAN / f"{f}.gz") as src, open(tv / f, "wb") as dst:
            shutil.copyfileobj(src, dst)
        gzip_file(tv / f, named / f"{f}.gz", name_in_header=True)
    assert (named / f"{FILES[0]}.gz").read_bytes() != (DEBIAN / f"{FILES[0]}.gz").read_bytes()
    preset = load_preset("fashion-mnist500", SMALL)
    roots = {"debian": DEBIAN, "torchvision": tmp_path / "tv", "named-gz": named}
    prints = {k: load_dataset("fashion-mnist", root=r).fingerprint for k, r in roots.items()}
    assert len(set(prints.values())) == 1, prints
    assert len({make_plan(preset, data_root=r).hash for r in roots.values()}) == 1

    out = {k: tmp_path / f"{k}.h5" for k in ("debian", "torchvision")}
    for k, path in out.items():
        build(preset, path, jobs=2 if k == "debian" else 1, progress=False, data_root=roots[k])
    assert out["debian"].read_bytes() == out["torchvision"].read_bytes()

    assert verify(out["debian"]) == []
    with modelset.load(out["debian"]) as ms:
        m = ms.models
        assert len(m) == 4 and ms.attrs["dataset_fingerprint"] == fashion.fingerprint
        assert ms.h5["architectures/small_cnn_zoo/params"].shape == (4, 4851)
        assert ms.h5["dataset"].attrs["superclass_names"].tolist() == ["tops", "trousers", "footwear", "bags"]
        assert ms.h5["relations"].attrs["kind"] == "superclass"
        # Trouser-Sneaker-Bag vs T-shirt/top-Pullover-Shirt: nothing in common
        np.testing.assert_array_equal(ms.relations, [[1, 0], [0, 1]])
        easy, hard = m[m.task == 0]["test_acc"], m[m.task == 1]["test_acc"]
        assert (easy > 0.97).all() and (hard > 0.6).all(), m[["task", "test_acc"]]  # one epoch already learns
        x, y = ms.task_data(1, "test", root=DEBIAN)
        with torch.no_grad():
            acc = (ms.model(2)(x).argmax(1) == y).float().mean().item()
        assert acc == pytest.approx(m.loc[2, "test_acc"], abs=1e-6)
