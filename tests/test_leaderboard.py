"""The leaderboard script: isolation of test labels, result files, the board, and rejections."""
import json

import h5py
import numpy as np
import pytest

import modelset
from metrics.evaluate import evaluate
from metrics.methods import load_method
from metrics.public import read_public

from .conftest import run_cli

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


def test_public_file_hides_test_labels(small_archive, tmp_path):
    out = tmp_path / "public.h5"
    assert run_cli("leaderboard", "public", "--archive", small_archive, "--out", out).returncode == 0
    with h5py.File(out, "r") as f:
        assert "labels" in f["task_id/train"] and "labels" not in f["task_id/test"]
        assert "labels" not in f["retrieval/test"]
        names = []
        f.visit(names.append)
        assert not any(n.split("/")[-1] in ("task", "seed", "ids", "checksum") for n in names)
    public = read_public(out)
    ms = modelset.load(small_archive)
    train, test = public["retrieval"]
    assert set(train.labels) == set(ms.models.loc[ms.split("retrieval")["train"], "task"])
    assert len(test) == len(ms.split("retrieval")["query"]) + len(ms.split("retrieval")["gallery"])


def test_submit_builtin_and_file_methods_then_render(small_archive, method_file, tmp_path):
    results = tmp_path / "results"
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "gram", "--results", results)
    assert r.returncode == 0, r.stderr
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", f"{method_file}:Mean",
                "--results", results)
    assert r.returncode == 0, r.stderr
    files = sorted(results.glob("*.json"))
    assert [json.loads(f.read_text())["method"] for f in files] == ["Mean", "gram"]
    res = json.loads(files[1].read_text())
    assert res["archive_sha256"] and res["plan_hash"] and res["seeds"] == [0] and res["versions"]["modelset"]
    ms = modelset.load(small_archive)
    in_process = evaluate(ms, load_method("gram"))["scores"]
    assert {k: v["values"] for k, v in res["scores"].items()} == in_process
    board = (results / "leaderboard.md").read_text()
    assert "| gram | weights | 1 |" in board and "| Mean | weights | 1 |" in board
    assert (results / "leaderboard.csv").read_text().count("\n") == 3


def test_embeddings_computed_elsewhere_score_like_the_method(small_archive, tmp_path):
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
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--embeddings", tmp_path / "emb.npz",
                "--results", tmp_path / "res")
    assert r.returncode == 0, r.stderr
    res = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    expected = evaluate(modelset.load(small_archive), method)["scores"]
    assert res["scores"].keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_allclose(res["scores"][k]["values"], v, rtol=1e-6, atol=1e-9, err_msg=k)


@pytest.mark.parametrize("cls, message", [
    ("Raises", "method failed: RuntimeError: out of ideas"),
    ("WrongShape", "embed() must return shape"),
    ("Nan", "similarity() returned NaN or infinite values"),
    ("Slow", "ran past its time limit of 5 s"),
    ("Missing", "has no attribute 'Missing'"),
])
def test_bad_methods_are_rejected_and_change_nothing(small_archive, method_file, tmp_path, cls, message):
    results = tmp_path / "results"
    ok = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "raw-cosine", "--results", results)
    assert ok.returncode == 0
    before = {f.name: f.read_bytes() for f in results.iterdir()}
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--method", f"{method_file}:{cls}",
                "--results", results, "--timeout", "5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert {f.name: f.read_bytes() for f in results.iterdir()} == before


def test_plot_writes_a_png(small_archive, tmp_path):
    out = tmp_path / "lps.png"
    r = run_cli("leaderboard", "plot", "--archive", small_archive, "--method", "gram", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
