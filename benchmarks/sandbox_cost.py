"""What confinement costs a submission: each method scored unconfined and confined, interleaved in one
run so that the machine's load falls on both alike; prints each pair's times and their ratio.

    python benchmarks/sandbox_cost.py [--archive data/digits500.h5] [--methods raw-cosine,gram,lps]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from results import recorded  # noqa: E402


def _submit(archive, method, sandbox, results) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelset.cli",
            "leaderboard",
            "submit",
            "--archive",
            archive,
            "--method",
            method,
            "--sandbox",
            sandbox,
            "--results",
            results,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if r.returncode != 0:
        sys.exit(f"{method} --sandbox {sandbox}: {r.stderr.strip()}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default="data/digits500.h5")
    ap.add_argument("--methods", default="raw-cosine,weight-stats,gram,lps-fixed")
    args = ap.parse_args()
    print(describe())
    print(f"{'method':14s} {'off s':>8s} {'require s':>10s} {'ratio':>6s}")
    total = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as d:
        for m in args.methods.split(","):
            off = _submit(args.archive, m, "off", os.path.join(d, "off"))
            req = _submit(args.archive, m, "require", os.path.join(d, "require"))
            total[0] += off
            total[1] += req
            print(f"{m:14s} {off:8.1f} {req:10.1f} {req / off:6.2f}")
    print(f"{'all':14s} {total[0]:8.1f} {total[1]:10.1f} {total[1] / total[0]:6.2f}")


if __name__ == "__main__":
    with recorded("sandbox_cost"):
        main()
