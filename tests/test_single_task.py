"""Zoos of one task (the Small CNN Zoo's form): which protocols apply is a property of the zoo. A
10-class zoo builds, verifies and is scored on the property protocols on a fixed held-out split;
task relations are skipped, and the board says so."""

import json

import numpy as np
import pytest

import modelset
from builders.build import build
from metrics.evaluate import evaluate
from metrics.leaderboard import render
from modelset.preset import load_preset
from modelset.protocols import applicable, required, required_splits, skipped
from modelset.verify import verify

from .helpers import run_cli

ONE_TASK = [
    "tasks.classes_per_task=10",
    "tasks.count=1",
    "seeds=16",
    "epochs=2",
    "unit_size=8",
    "sample.lr={loguniform=[0.0003, 0.03]}",
]


@pytest.fixture(scope="module")
def one_task(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_task") / "one.h5"
    build(load_preset("digits500", ONE_TASK), out, jobs=1, progress=False)
    return out


def test_a_zoo_of_one_task_builds_and_verifies(one_task):
    assert verify(one_task) == []
    with modelset.load(one_task) as ms:
        assert len(ms.tasks) == 1 and ms.tasks["n_classes"].tolist() == [10] and len(ms.models) == 16
        assert set(ms.h5["splits"]) == {"task_id"}
        train, test = ms.split("task_id")["train"], ms.split("task_id")["test"]
        assert len(train) + len(test) == 16 and not set(train) & set(test) and len(test) >= 4
        names = [p.name for p in applicable(ms)]
    assert names == ["accuracy", "gap", "hparams"]


def test_which_protocols_are_required_depends_on_the_zoo():
    assert required(1) == ["accuracy.kendall", "accuracy.r2", "gap.kendall"]
    assert {"task_id.top1", "retrieval.map", "accuracy.kendall"} <= set(required(50))
    assert set(skipped(1)) == {"task_id", "retrieval", "relation", "clustering"} and skipped(2) == {}
    assert required_splits(1) == ["task_id"] and required_splits(3) == ["task_id", "retrieval"]


def test_verify_names_a_missing_required_split(one_task, tmp_path, small_archive):
    import shutil

    import h5py

    broken = tmp_path / "broken.h5"
    shutil.copy(small_archive, broken)
    with h5py.File(broken, "a") as f:
        del f["splits/retrieval"]
    assert "/splits/retrieval missing: every zoo of 6 task(s) stores it" in verify(broken)


def test_scored_on_the_property_protocols(one_task):
    with modelset.load(one_task) as ms:
        result = evaluate(ms, "weight-stats")
    assert set(result["scores"]) >= set(required(1)) and not any(k.startswith("retrieval") for k in result["scores"])
    assert all(np.isfinite(v[0]) for v in result["scores"].values())


def test_the_board_says_task_relations_are_skipped(one_task, tmp_path):
    results = tmp_path / "results"
    r = run_cli("leaderboard", "submit", "--archive", one_task, "--method", "weight-stats", "--results", results)
    assert r.returncode == 0, r.stderr
    (result,) = [json.loads(f.read_text()) for f in results.glob("*.json")]
    assert result["required"] == required(1) and set(result["skipped"]) == set(skipped(1))
    board = (results / "leaderboard.md").read_text()
    assert "Skipped (task_id, retrieval, relation, clustering): needs 2 or more tasks; the zoo holds 1." in board
    assert "accuracy.kendall" in board and "| 1 | weight-stats |" in board
    # A result of another zoo (one that requires fewer metrics) is not shown on this one's board.
    (results / "other.json").write_text(json.dumps({**result, "method": "other", "required": ["accuracy.kendall"]}))
    assert render(results)["method"].tolist() == ["weight-stats"]
