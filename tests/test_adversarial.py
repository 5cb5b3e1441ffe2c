"""Methods written to change what their result says (issue 12): the scoring process alone decides a
result's name, kind and seeds, and `leaderboard plot` runs a method only in the sandboxed child.
Each adversary below cheats as well as it can; a control shows its check would see the cheat."""

import json
import os

import pytest

from metrics.sandbox import probe

from .helpers import TOP_LEVEL, run_cli

_why = probe()
needs_sandbox = pytest.mark.skipif(_why is not None, reason=f"this machine cannot confine a method: {_why}")


def _submit(archive, method, results, *extra):
    return run_cli("leaderboard", "submit", "--archive", archive, "--method", method, "--results", results, *extra)


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- the name -------------------------------------------------------------------------------------
ESCAPE = """
class Mean:
    def __init__(self, seed=0):
        pass

    def embed(self, view):
        return view.params.mean(1, keepdims=True)


Mean.__name__ = Mean.__qualname__ = "../../escaped"  # what a child reporting its class's name would say
"""


def test_a_method_named_like_a_path_writes_only_into_the_results_directory(small_archive, tmp_path):
    method = tmp_path / "escape.py"
    method.write_text(ESCAPE)
    results = tmp_path / "a" / "b" / "results"
    r = _submit(small_archive, f"{method}:Mean", results)
    assert r.returncode == 0, r.stderr
    outside = [p for p in _files(tmp_path) if p.suffix == ".json" and p.parent != results]
    assert not outside, outside
    assert [json.loads(p.read_text())["method"] for p in results.glob("*.json")] == ["Mean"]  # from the spec


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "", "x" * 65, "tab\there", "../results/x"])
def test_a_bad_name_is_refused_and_nothing_is_written(small_archive, tmp_path, name):
    r = _submit(small_archive, "raw-cosine", tmp_path / "a" / "results", "--name", name)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--name" in r.stderr, r.stderr
    assert _files(tmp_path) == []


# -- the kind -------------------------------------------------------------------------------------
PEEK = '''
import os

import numpy as np

DATA_DIRS = ({data_root!r}, "/usr/share/datasets")  # the scoring side's data directory, Debian's


class Peek:
    """Claims to read weights only, but runs the models on any real inputs it can find."""

    functional = False

    def __init__(self, seed=0):
        pass

    def embed(self, view):
        found = []
        probe = getattr(view, "probe", None)
        if probe is not None:
            import torch

            with torch.no_grad():
                [net(torch.from_numpy(probe)) for net in view.modules()]  # the models really run on it
            found.append(f"view.probe ({{len(probe)}} inputs)")
        import h5py

        with h5py.File("public.h5", "r") as f:
            if "probe" in f:
                found.append("the public file's probe")
        try:
            from modelset.datasets import load_dataset

            load_dataset("digits")
            found.append("modelset's digits")
        except Exception:
            pass
        try:
            from sklearn.datasets import load_digits

            load_digits()
            found.append("scikit-learn's digits")
        except Exception:
            pass
        found += [f"files in {{d}}" for d in DATA_DIRS if os.path.isdir(d) and os.listdir(d)]
        if found:
            raise RuntimeError("LEAK: " + "; ".join(found))
        return view.params[:, :8]
'''


@pytest.fixture
def peek(tmp_path, monkeypatch):
    """Peek as an installed module, with the data directory ($MODELSET_DATA) inside its package: a
    directory the sandbox shows the method, so only hiding keeps the dataset file out of reach."""
    package = tmp_path / "site" / "peekpkg"
    data = package / "data"
    data.mkdir(parents=True)
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"images")
    (package / "__init__.py").write_text(PEEK.format(data_root=str(data)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MODELSET_DATA", str(data))
    return "peekpkg:Peek", str(data)


@needs_sandbox
def test_a_weights_only_method_gets_no_inputs_to_run_the_models_on(small_archive, tmp_path, peek):
    method, data = peek
    r = _submit(small_archive, method, tmp_path / "results", "--sandbox", "require")
    assert r.returncode == 0, r.stderr  # Peek raises "LEAK: ..." if it found any real inputs
    result = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert result["kind"] == "weights" and result["confined"] is True


def test_control_submitted_as_functional_the_same_method_finds_the_probe(small_archive, tmp_path, peek):
    method, data = peek
    r = _submit(small_archive, method, tmp_path / "results", "--functional", "--data-root", data)  # the flag too
    assert r.returncode == 2 and "LEAK: view.probe (256 inputs); the public file's probe" in r.stderr, r.stderr


def test_control_unconfined_the_same_method_finds_every_dataset(small_archive, tmp_path, peek):
    method, data = peek
    r = _submit(small_archive, method, tmp_path / "results", "--sandbox", "off")
    assert r.returncode == 2 and "LEAK: modelset's digits; scikit-learn's digits; files in " + data in r.stderr, (
        r.stderr
    )


# -- the seeds ------------------------------------------------------------------------------------
SEEDS = '''
import numpy as np

_savez = np.savez


def _rewrite(keep, add):
    """Have the runner's one outputs file drop or add seeds: np.savez, as the runner calls it."""
    def savez(fh, **arrays):
        if keep is not None:
            arrays = {k: v for k, v in arrays.items() if k.startswith(f"seed-{keep}/")}
        if add is not None:
            arrays.update({f"seed-{add}/" + k.partition("/")[2]: v for k, v in list(arrays.items())})
        _savez(fh, **arrays)
    np.savez = savez


class _Noisy:
    learned = True

    def __init__(self, seed=0):
        self.seed = seed

    def embed(self, view):
        rng = np.random.default_rng(self.seed)
        return view.params[:, :8] + rng.normal(size=(len(view), 8))


class BestOnly(_Noisy):
    """Reports only its best seed."""

    def __init__(self, seed=0):
        super().__init__(seed)
        _rewrite(keep=2, add=None)


class ExtraSeed(_Noisy):
    """Adds the output of a seed nobody asked for."""

    def __init__(self, seed=0):
        super().__init__(seed)
        _rewrite(keep=None, add=99)
'''


SHARED = """
class Shared:
    \"\"\"Keeps in its class what each seed's run did, to hand a later seed an earlier seed's work.\"\"\"

    learned = True
    seeds = set()

    def __init__(self, seed=0):
        Shared.seeds.add(seed)

    def embed(self, view):
        if len(Shared.seeds) > 1:
            raise RuntimeError(f"LEAK: seeds {sorted(Shared.seeds)} ran in one process")
        return view.params[:, :8]
"""


def test_no_seeds_run_shares_a_process_with_another(small_archive, tmp_path):
    """Each seed's run is a process of its own: a result's seeds are independent runs."""
    method = tmp_path / "shared.py"
    method.write_text(SHARED)
    r = _submit(small_archive, f"{method}:Shared", tmp_path / "results", "--seeds", "0,1")
    assert r.returncode == 0, r.stderr  # Shared raises "LEAK: ..." when seeds share its class
    assert json.loads(next((tmp_path / "results").glob("*.json")).read_text())["seeds"] == [0, 1]


@needs_sandbox
def test_a_result_is_confined_only_if_every_seeds_run_was(small_archive, monkeypatch):
    """The machine fails to confine one seed's run (here: the first's, as if --sandbox off), the
    next is confined: the run as a whole is not."""
    import modelset
    from metrics import leaderboard as lb
    from metrics.methods import submission
    from metrics.public import make_public

    real = lb._run_seed

    def first_unconfined(spec, seed, public, run, work, readable, time_limit, sandbox, *rest):
        return real(spec, seed, public, run, work, readable, time_limit, "off" if seed == 1 else sandbox, *rest)

    monkeypatch.setattr(lb, "_run_seed", first_unconfined)
    with modelset.load(small_archive) as ms:
        public, _ = make_public(ms, lb.public_rng(ms))
    outputs, _, held = lb.run_isolated(submission("raw-cosine"), [1, 0], public, 300, "require")
    assert len(outputs) == 2 and held is None


@pytest.mark.parametrize(
    "cls, message",
    [
        ("BestOnly", "missing seed-0"),  # each seed runs alone: the first one asked for is missing
        ("ExtraSeed", "unexpected seed-99"),
    ],
)
def test_a_run_that_leaves_out_or_adds_a_seed_is_rejected(small_archive, tmp_path, cls, message):
    method = tmp_path / "seeds.py"
    method.write_text(SEEDS)
    results = tmp_path / "results"
    r = _submit(small_archive, f"{method}:{cls}", results, "--seeds", "0,1,2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not list(results.glob("*.json"))


# -- the scorer's own run ---------------------------------------------------------------------------
HALF = """
import numpy as np

_savez = np.savez


class ScoresOnly:
    \"\"\"Classifies, then has the runner's outputs file drop classes_: the scorer must not crash.\"\"\"

    def __init__(self, seed=0):
        def savez(fh, **arrays):
            _savez(fh, **{k: v for k, v in arrays.items() if not k.endswith(".classes")})

        np.savez = savez

    def fit(self, view):
        self.classes_ = np.unique(view.labels)

    def embed(self, view):
        return view.params[:, :8]

    def predict_scores(self, view):
        return np.zeros((len(view), len(self.classes_)))
"""


def test_outputs_that_break_a_pair_of_fields_are_rejected_in_one_line(small_archive, tmp_path):
    """scores without their classes reached the scorer's check, which failed with a traceback."""
    method = tmp_path / "half.py"
    method.write_text(HALF)
    r = _submit(small_archive, f"{method}:ScoresOnly", tmp_path / "results")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "predict_scores() and classes_ go together" in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()


LIAR = """
import sys


class Liar:
    \"\"\"Confined, prints the runner's own warning that it runs unconfined, to discredit the run.\"\"\"

    def __init__(self, seed=0):
        print("warning: method runs unconfined (forged)", file=sys.stderr)

    def embed(self, view):
        return view.params[:, :8]
"""


@needs_sandbox
def test_a_confined_method_cannot_make_the_scorer_warn_it_ran_unconfined(small_archive, tmp_path):
    method = tmp_path / "liar.py"
    method.write_text(LIAR)
    r = _submit(small_archive, f"{method}:Liar", tmp_path / "results", "--sandbox", "require")
    assert r.returncode == 0 and "unconfined" not in r.stderr, r.stderr
    assert json.loads(next((tmp_path / "results").glob("*.json")).read_text())["confined"] is True


# -- plotting -------------------------------------------------------------------------------------
def _plot(archive, method, out, *extra):
    return run_cli("leaderboard", "plot", "--archive", archive, "--method", method, "--out", out, *extra)


def test_plot_never_runs_a_submitted_file_in_the_main_process(small_archive, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    method = tmp_path / "top_level.py"
    method.write_text(TOP_LEVEL.format(marks=str(marks)))
    out = tmp_path / "mean.png"
    r = _plot(small_archive, f"{method}:Mean", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    importers = [p.read_text() for p in marks.iterdir()]
    assert not any("plot" in argv for argv in importers), importers


def test_control_plot_runs_the_file_in_the_runner_child(small_archive, tmp_path):
    """Unconfined, the child can leave its mark: the file ran, and only in metrics.runner."""
    marks = tmp_path / "marks"
    marks.mkdir()
    method = tmp_path / "top_level.py"
    method.write_text(TOP_LEVEL.format(marks=str(marks)))
    r = _plot(small_archive, f"{method}:Mean", tmp_path / "mean.png", "--sandbox", "off")
    assert r.returncode == 0, r.stderr
    importers = [p.read_text() for p in marks.iterdir()]
    assert importers and all("runner" in argv and "plot" not in argv for argv in importers), importers


@needs_sandbox
@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_a_data_directory_inside_a_hidden_one_is_hidden_with_it(small_archive, tmp_path):
    """--data-root /usr/share/datasets/fashion-mnist lies inside /usr/share/datasets, which the sandbox
    hides anyway: the run stays confined instead of failing to hide what is already gone."""
    r = _submit(
        small_archive,
        "raw-cosine",
        tmp_path / "results",
        "--sandbox",
        "require",
        "--data-root",
        "/usr/share/datasets/fashion-mnist",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert result["confined"] is True
