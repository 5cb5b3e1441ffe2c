import os
import subprocess
import sys

import pytest

from builders.build import build
from modelset.preset import load_preset

# A tiny zoo for pipeline tests: 6 tasks x 2 seeds, 3 epochs, 2 models per work unit.
SMALL = ["seeds=2", "tasks.count=6", "epochs=3", "unit_size=2"]
# A tiny mixed zoo: 4 tasks x {dense, STR, DGConv, ACDC} x 2 seeds, 4 epochs.
MIXED = ["seeds=2", "tasks.count=4", "epochs=4", 'grid.family=["dense", "str", "dgconv", "acdc"]']


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "small.h5"
    build(load_preset("digits500", SMALL), out, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def digits500(tmp_path_factory):
    """The real default preset, built as `make modelset` builds it (2 workers)."""
    out = tmp_path_factory.mktemp("digits500") / "digits500.h5"
    build(load_preset("digits500"), out, jobs=2, progress=False)
    return out


def run_cli(*args, cwd=None, timeout=600):
    """Run the installed `modelset` command; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "modelset.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
