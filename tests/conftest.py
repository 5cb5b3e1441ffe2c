import hashlib
import os
import subprocess
import sys

import h5py
import pytest

import modelset.datasets.torchvision as tvs
from builders.build import build
from modelset.archive import load
from modelset.datasets import DATA_ENV
from modelset.preset import load_preset

from .datafiles import write_all

# A tiny zoo for pipeline tests: 6 tasks x 2 seeds, 3 epochs, 2 models per work unit.
SMALL = ["seeds=2", "tasks.count=6", "epochs=3", "unit_size=2"]
# A tiny zoo's command-line flags, for presets of file-based datasets.
TINY = ["--set", "seeds=1", "--set", "tasks.count=2", "--set", "epochs=2", "--no-progress"]
# A tiny mixed zoo: 4 tasks x {dense, STR, DGConv, ACDC} x 2 seeds, 4 epochs.
MIXED = ["seeds=2", "tasks.count=4", "epochs=4", 'grid.family=["dense", "str", "dgconv", "acdc"]']


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "small.h5"
    build(load_preset("digits500", SMALL), out, jobs=1, progress=False)
    return out


# A tiny property zoo: digits-sweep on 2 tasks, relu and tanh x two learning rates x 2 seeds (16
# models), 3 epochs, checkpoints at the init, after epoch 1 and at the end.
SWEEP = [
    "tasks.count=2",
    "epochs=3",
    "unit_size=8",
    "checkpoints=[0, 1, 3]",
    'grid.optimizer=["adam"]',
    'grid.init=["default"]',
    "grid.weight_decay=[0.0]",
    "grid.lr=[0.003, 0.03]",
]


@pytest.fixture(scope="session")
def sweep_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.h5"
    build(load_preset("digits-sweep", SWEEP), out, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def digits500(tmp_path_factory):
    """The real default preset, built as `make modelset` builds it (2 workers)."""
    out = tmp_path_factory.mktemp("digits500") / "digits500.h5"
    build(load_preset("digits500"), out, jobs=2, progress=False)
    return out


def run_cli(*args, cwd=None, timeout=600, data_env="inherit"):
    """Run the installed `modelset` command; returns the CompletedProcess. ``data_env`` is its
    $MODELSET_DATA: this process's ("inherit"), a directory, or None for none."""
    env = dict(os.environ)
    if data_env != "inherit":
        env.pop(DATA_ENV, None)
        if data_env is not None:
            env[DATA_ENV] = str(data_env)
    return subprocess.run(
        [sys.executable, "-m", "modelset.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**env, "PYTHONWARNINGS": "ignore"},
    )


def archive_params(path):
    """{architecture: its parameter matrix} of an archive."""
    with h5py.File(path, "r") as f:
        return {a: f[f"architectures/{a}/params"][()] for a in f["architectures"]}


def archive_metadata(path):
    """Every table and attribute but the creation time."""
    with load(path) as ms:
        attrs = {k: v for k, v in ms.attrs.items() if k != "created"}
        return (
            attrs,
            ms.models.to_dict("list"),
            ms.tasks.to_dict("list"),
            {s: {p: v.tolist() for p, v in ms.split(s).items()} for s in ("task_id", "retrieval")},
        )


def permute_hidden_units(view, rng):
    """The same models with every hidden layer's units in a new random order, as a new view
    (check_method's own transform, with a seed drawn from ``rng``)."""
    from metrics.checks import permute_hidden_units as permute

    return permute(view, seed=int(rng.integers(2**31)))


# A submitted method file whose top-level code records which process imported it (in ``marks``).
TOP_LEVEL = """
import os
import sys

try:  # who imports this file: only the sandboxed child may
    with open(os.path.join({marks!r}, f"imported-by-{{os.getpid()}}"), "w") as fh:
        fh.write(" ".join(sys.argv))
except OSError:
    pass


class Mean:
    def __init__(self, seed=0):
        pass

    def embed(self, view):
        return view.params.mean(1, keepdims=True)
"""


# -- tiny files of the file-based datasets (tests/datafiles.py) ---------------------------------


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
