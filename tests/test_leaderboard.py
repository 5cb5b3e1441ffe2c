"""The leaderboard script: isolation of test labels, result files, the board, and rejections."""

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import metrics
import modelset
from metrics.evaluate import evaluate
from metrics.methods import load_method
from metrics.public import read_public

from .helpers import run_cli

METHOD_FILE = '''
import time
import numpy as np

class Mean:
    """Embeds each model by the mean of its weights (a deliberately weak method)."""
    def __init__(self, seed=0):
        self.seed = seed
    def embed(self, view):
        return np.stack([view.params.mean(1), view.params.std(1)], 1)

class Raises:
    def __init__(self, seed=0): pass
    def embed(self, view): raise RuntimeError("out of ideas")

class WrongShape:
    def __init__(self, seed=0): pass
    def embed(self, view): return np.ones((len(view) + 1, 3))

class Nan:
    def __init__(self, seed=0): pass
    def similarity(self, view): return np.full((len(view), len(view)), np.nan)

class RunsModels:
    """Runs the models, but is submitted without --functional."""
    functional = True  # a claim nobody asks
    def __init__(self, seed=0): pass
    def embed(self, view): return np.stack([net(view.probe).ravel() for net in view.modules()])

class Slow:
    def __init__(self, seed=0): pass
    def embed(self, view):
        time.sleep(60)
        return np.ones((len(view), 2))
'''


@pytest.fixture
def method_file(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(METHOD_FILE)
    return f


def test_public_file_hides_test_labels(small_archive, tmp_path, opened):
    out = tmp_path / "public.h5"
    assert run_cli("leaderboard", "public", "--archive", small_archive, "--out", out).returncode == 0
    with h5py.File(out, "r") as f:
        assert "labels" in f["task_id/train"] and "labels" not in f["task_id/test"]
        assert "labels" not in f["retrieval/test"]
        names = []
        f.visit(names.append)
        assert not any(n.split("/")[-1] in ("task", "seed", "ids", "checksum") for n in names)
        assert "probe" not in f  # weights and layout only, unless asked for as functional
    public = read_public(out)
    ms = opened(small_archive)
    train, test = public["retrieval"]
    assert set(train.labels) == set(ms.models.loc[ms.split("retrieval")["train"], "task"])
    assert len(test) == len(ms.split("retrieval")["query"]) + len(ms.split("retrieval")["gallery"])
    functional = tmp_path / "functional.h5"
    assert (
        run_cli("leaderboard", "public", "--archive", small_archive, "--out", functional, "--functional").returncode
        == 0
    )
    assert read_public(functional)["retrieval"][1].probe.shape == (256, 1, 8, 8)


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_submit_builtin_and_file_methods_then_render(small_archive, method_file, tmp_path, opened):
    results = tmp_path / "results"
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "gram", "--results", results)
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "leaderboard", "submit", "--archive", small_archive, "--method", f"{method_file}:Mean", "--results", results
    )
    assert r.returncode == 0, r.stderr
    files = sorted(results.glob("*.json"))
    mean, gram = [json.loads(f.read_text()) for f in files]
    assert [mean["method"], gram["method"]] == ["Mean", "gram"]
    assert gram["archive_sha256"] and gram["plan_hash"] and gram["seeds"] == [0] and gram["versions"]["modelset"]
    assert gram["kind"] == mean["kind"] == "weights"
    # each result traces back to the code that ran
    baselines = Path(metrics.__file__).parent / "baselines.py"
    assert gram["code"] == {
        "module": "metrics.baselines",
        "version": modelset.__version__,
        "sha256": _sha256(baselines),
    }
    assert mean["code"] == {"file": "mine.py", "sha256": _sha256(method_file)}
    ms = opened(small_archive)
    in_process = evaluate(ms, "gram")["scores"]
    # equal up to the last bits a BLAS call's threads and alignment may change between two processes
    assert {k: pytest.approx(v["values"], rel=1e-9, abs=1e-12) for k, v in gram["scores"].items()} == in_process
    board = (results / "leaderboard.md").read_text()
    assert board.startswith("## Weights only\n") and "Functional" not in board
    assert "| gram | 1 |" in board and "| Mean | 1 |" in board
    assert (results / "leaderboard.csv").read_text().count("\n") == 3


def test_the_board_ranks_each_kind_apart(small_archive, method_file, tmp_path):
    results = tmp_path / "results"
    for method in ("raw-cosine", "cka", "gram", f"{method_file}:Mean"):
        r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", method, "--results", results)
        assert r.returncode == 0, r.stderr
    board = (results / "leaderboard.md").read_text()
    weights, functional = board.split("## Functional")
    assert "## Weights only" in weights and "cka" not in weights
    assert "| 1 | cka | 1 |" in functional and "gram" not in functional  # ranked first among its kind
    csv = pd.read_csv(results / "leaderboard.csv")
    assert list(csv.columns[:3]) == ["kind", "rank", "method"]
    assert csv["kind"].tolist() == ["weights"] * 3 + ["functional"]
    for _, part in csv.groupby("kind"):  # rank within the kind: 1 + how many of its kind score higher
        maps = part["retrieval.map"].to_numpy()
        assert part["rank"].tolist() == [1 + int((maps > m).sum()) for m in maps]
        assert list(maps) == sorted(maps, reverse=True)
    assert csv.set_index("method").loc["cka", "kind"] == "functional"


def test_the_board_shows_only_results_and_names_the_rest_in_one_line(small_archive, tmp_path):
    results = tmp_path / "results"
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "raw-cosine", "--results", results)
    assert r.returncode == 0, r.stderr
    good = json.loads(next(results.glob("*.json")).read_text())
    bad = {
        "notes.json": "not json at all",
        "old.json": json.dumps({**good, "result_version": 1}),
        "forged.json": json.dumps({**good, "method": "forged", "seeds": [0, 1]}),  # 2 seeds, 1 value each
        "escape.json": json.dumps({**good, "method": "../escape"}),
        "nokind.json": json.dumps({k: v for k, v in good.items() if k != "kind"}),
        "nan.json": json.dumps(
            {
                **good,
                "method": "nan",
                "scores": {
                    **good["scores"],
                    "retrieval.map": {"mean": float("nan"), "std": 0.0, "values": [float("nan")]},
                },
            }
        ),
    }
    for name, text in bad.items():
        (results / name).write_text(text)
    r = run_cli("leaderboard", "render", "--results", results)
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and all(name in warnings[0] for name in bad), r.stderr
    board = (results / "leaderboard.md").read_text()
    assert "raw-cosine" in board and not any(w in board for w in ("forged", "escape", "nan"))


def test_the_probe_is_only_taken_from_the_data_the_models_saw(small_archive, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copyfile(small_archive, other)
    with h5py.File(other, "r+") as f:
        f.attrs["dataset_fingerprint"] = "0" * 16
    results = tmp_path / "results"
    r = run_cli("leaderboard", "submit", "--archive", other, "--method", "cka", "--results", results)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "is not the data this archive's models saw" in r.stderr and "--data-root" in r.stderr
    assert not results.exists()
    r = run_cli("leaderboard", "submit", "--archive", other, "--method", "raw-cosine", "--results", results)
    assert r.returncode == 0, r.stderr  # a weights-only method needs no dataset at all


def test_embeddings_computed_elsewhere_score_like_the_method(small_archive, tmp_path, opened):
    public_path = tmp_path / "public.h5"
    run_cli("leaderboard", "public", "--archive", small_archive, "--out", public_path)
    public = read_public(public_path)
    method = load_method("weight-stats")
    emb = {}
    for protocol, (train, test) in public.items():
        m = method(seed=0).fit(train)
        view = type(train).concat(train, test) if protocol == "task_id" else test
        emb[protocol] = m.embed(view)
    np.savez(tmp_path / "emb.npz", **emb)
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--embeddings",
        tmp_path / "emb.npz",
        "--results",
        tmp_path / "res",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    assert res["method"] == "emb" and res["kind"] == "weights" and res["confined"] is False  # computed elsewhere
    assert "| 1 | emb (unconfined) | 1 |" in (tmp_path / "res" / "leaderboard.md").read_text()
    assert res["code"] == {"file": "emb.npz", "sha256": _sha256(tmp_path / "emb.npz")}
    expected = evaluate(opened(small_archive), "weight-stats")["scores"]
    assert res["scores"].keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_allclose(res["scores"][k]["values"], v, rtol=1e-6, atol=1e-9, err_msg=k)


@pytest.mark.parametrize(
    "cls, message",
    [
        ("Raises", "method failed: RuntimeError: out of ideas"),
        ("WrongShape", "embed() of seed 0: shape (5, 3), expected (4, <= 16384)"),
        ("Nan", "similarity() returned NaN or infinite values"),
        ("Slow", "ran past its time limit of 5 s"),
        ("Missing", "has no attribute 'Missing'"),
        ("RunsModels", "this view holds weights only, no probe inputs"),
    ],
)
def test_bad_methods_are_rejected_and_change_nothing(small_archive, method_file, tmp_path, cls, message):
    results = tmp_path / "results"
    ok = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "raw-cosine", "--results", results)
    assert ok.returncode == 0
    before = {f.name: f.read_bytes() for f in results.iterdir()}
    # 5 s stops Slow (it sleeps 60 s); the others get room to start up on a loaded machine
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--method",
        f"{method_file}:{cls}",
        "--results",
        results,
        "--timeout",
        "5" if cls == "Slow" else "120",
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert {f.name: f.read_bytes() for f in results.iterdir()} == before


def test_plot_writes_a_png(small_archive, tmp_path):
    out = tmp_path / "lps.png"
    r = run_cli("leaderboard", "plot", "--archive", small_archive, "--method", "gram", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
