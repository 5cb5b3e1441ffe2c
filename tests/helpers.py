"""What tests share besides fixtures: tiny preset overrides, the CLI in a child process, the one
kill-and-resume driver, and readers of an archive's weights and tables. Imported as
``from .helpers import ...``; conftest.py holds only fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import h5py

from modelset.archive import load
from modelset.datasets import DATA_ENV

# A tiny zoo for pipeline tests: 6 tasks x 2 seeds, 3 epochs, 2 models per work unit.
SMALL = ["seeds=2", "tasks.count=6", "epochs=3", "unit_size=2"]
# A tiny zoo's command-line flags, for presets of file-based datasets.
TINY = ["--set", "seeds=1", "--set", "tasks.count=2", "--set", "epochs=2", "--no-progress"]
# A tiny mixed zoo: 4 tasks x {dense, STR, DGConv, ACDC} x 2 seeds, 4 epochs.
MIXED = ["seeds=2", "tasks.count=4", "epochs=4", 'grid.family=["dense", "str", "dgconv", "acdc"]']
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


# -- kill and resume ----------------------------------------------------------------------------


def build_command(out, sets, preset="digits500", jobs=1) -> list[str]:
    """`modelset build` of ``preset`` with ``--set`` overrides ``sets`` into ``out``."""
    return [
        *(sys.executable, "-m", "modelset.cli", "build", "--preset", preset, "--out", str(out)),
        *("--jobs", str(jobs), "--no-progress"),
        *[a for s in sets for a in ("--set", s)],
    ]


def _env(failpoint=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MODELSET_FAILPOINT"}
    return {**env, "MODELSET_FAILPOINT": failpoint} if failpoint else env


def shard_files(out) -> list:
    return sorted(out.parent.glob(f".{out.name}.shards/unit-*.npz"))


def _as_a_terminal_runs_it() -> None:
    """In the child before exec: Ctrl-C's default action. A job started in the background of a
    script (nohup ... &, as CI may run the suite) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_build(out, sets, *, preset="digits500", jobs=1, failpoint=None, new_session=False) -> subprocess.Popen:
    """The build in a child process; ``new_session``: in a process group of its own (its workers
    too), with SIGINT's default action, as a terminal runs it."""
    return subprocess.Popen(
        build_command(out, sets, preset, jobs),
        env=_env(failpoint),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
        preexec_fn=_as_a_terminal_runs_it if new_session else None,
    )


def wait_for_shards(proc: subprocess.Popen, out, n: int, timeout: float = 120) -> None:
    """Until ``n`` shards of ``out`` are on disk, the build ended, or ``timeout`` seconds passed."""
    deadline = time.time() + timeout
    while len(shard_files(out)) < n and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)


@dataclass
class Resumed:
    shards_at_kill: int  # shards on disk when the build died
    killed_stderr: str
    resumed: subprocess.CompletedProcess  # the same command, run again to the end


def kill_and_resume(
    out, sets, *, failpoint=None, after_shards=None, after_kill=None, preset="digits500", jobs=1
) -> Resumed:
    """Build ``out`` in a child process killed by SIGKILL, at ``failpoint`` (``builders.failpoints``)
    or once ``after_shards`` shards are written; check that it died so, leaving no archive; call
    ``after_kill()`` to look at what it left; then run the same command again."""
    assert (failpoint is None) != (after_shards is None), "give a failpoint or a shard count"
    proc = start_build(out, sets, preset=preset, jobs=jobs, failpoint=failpoint)
    if after_shards is not None:
        wait_for_shards(proc, out, after_shards)
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert not out.exists()
    shards = len(shard_files(out))
    if after_kill is not None:
        after_kill()
    resumed = subprocess.run(
        build_command(out, sets, preset, jobs), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    return Resumed(shards, stderr, resumed)


# -- reading archives ---------------------------------------------------------------------------


def archive_params(path):
    """{architecture: its parameter matrix} of an archive."""
    with h5py.File(path, "r") as f:
        return {a: f[f"architectures/{a}/params"][()] for a in f["architectures"]}


def assert_same_archive(a, b):
    """The same weights, bit for bit, and the same tables and attributes (but the creation time)."""
    pa, pb = archive_params(a), archive_params(b)
    assert pa.keys() == pb.keys() and all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert archive_metadata(a) == archive_metadata(b)


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


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is no package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
