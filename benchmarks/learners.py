"""The learned similarity methods: the LPS ablation, the board of every built-in method on the
given archives, and the make-leaderboard time, in one run.

Beside every time it prints the machine, the core's fp32 FMA peak measured in the same run
(benchmarks/fma_peak.c) and the load average, since the same fit takes 2-3x longer on a shared
machine. Scores are in-process (``metrics.evaluate``'s steps, the leaderboard's public views and
private key); times are per seed (one fit per protocol, then the embeddings).

    .venv/bin/python benchmarks/learners.py [--archive data/digits500.h5 ...] [--seeds 0,1,2,3,4]
        [--no-ablation] [--rows TEXT] [--no-board] [--leaderboard] [--methods lps,nfn,...]

--leaderboard also times `modelset leaderboard submit` of every built-in on the first archive (what
`make leaderboard` runs), against the 5-minute budget.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from results import recorded  # noqa: E402

import modelset  # noqa: E402
from metrics.baselines import FirstOrderNet  # noqa: E402
from metrics.equivariant import NFN  # noqa: E402
from metrics.evaluate import run_method, score  # noqa: E402
from metrics.lps import LPS, LearnedProbes, LPSFixed  # noqa: E402
from metrics.methods import BUILTIN, load_method  # noqa: E402
from metrics.public import make_public  # noqa: E402

BUDGET = 300.0  # seconds: make leaderboard, every built-in, digits500

# (row, class, the constructor arguments it changes): LPS's pieces one at a time, from the fixed chain
# to the default.
ABLATION = [
    ("lps-fixed: fixed chained Grams + class map", LPSFixed, {}),
    ("lps: learned inputs, Grams of every layer + class map", LPS, {"grams": "all"}),
    ("lps: learned inputs, Gram of the outputs + class map (lps)", LPS, {}),
    ("learned inputs, class map only (learned-probes)", LearnedProbes, {}),
    ("  inputs 2x2", LearnedProbes, {"size": 2}),
    ("  inputs 8x8", LearnedProbes, {"size": 8}),
    ("  4 inputs", LearnedProbes, {"rank": 4}),
    ("  16 inputs", LearnedProbes, {"rank": 16}),
    ("first-order (no alignment)", FirstOrderNet, {}),
    ("first-order, hidden units randomly permuted each epoch", FirstOrderNet, {"permutations": True}),
    ("nfn: default (1 HNP layer, dropout 0.5)", NFN, {}),
    (
        "  dropout 0.1, weight decay 1e-2, 60 epochs",
        NFN,
        {"dropout": 0.1, "weight_decay": 1e-2, "epochs": 60, "lr": 2e-2},
    ),
]


def variant(cls, options: dict):
    """The method class with some hyper-parameters changed: what the scorer calls as ``cls(seed=s)``."""
    return functools.partial(cls, **options)


def measure(ms, cls, seeds) -> dict:
    """{metric: [per seed]} and seconds per seed."""
    public, key = make_public(ms, np.random.default_rng(0))
    t = time.perf_counter()
    runs = [score(run_method(cls, s, public), public, key, ms) for s in seeds]
    return {k: [r[k] for r in runs] for k in runs[0]}, (time.perf_counter() - t) / len(seeds)


def cell(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def board(path, seeds, methods=None):
    print(f"\n## {Path(path).name}: every built-in (seeds {','.join(map(str, seeds))} for learned methods)\n")
    ms = modelset.load(path)
    cross = "cross_family" in ms.h5["splits"]
    print("| method | kind | retrieval mAP | task_id top1 |" + (" cross_family mAP |" if cross else "") + " s/seed |")
    print("|---|---|---|---|" + ("---|" if cross else "") + "---|")
    for name, b in BUILTIN.items():
        if b.functional or (methods and name not in methods):
            continue  # the functional references need the dataset files: the leaderboard scores them
        r, dt = measure(ms, load_method(name), seeds if b.learned else [0])
        row = f"| {name} | weights | {cell(r['retrieval.map'])} | {cell(r['task_id.top1'])} |"
        print(row + (f" {cell(r['cross_family.map'])} |" if cross else "") + f" {dt:.1f} |", flush=True)


def leaderboard_time(path) -> None:
    print(f"\n## make leaderboard (modelset leaderboard submit, every built-in) on {Path(path).name}\n")
    print("| method | wall s |\n|---|---|")
    total = 0.0
    with tempfile.TemporaryDirectory() as out:
        for name in BUILTIN:
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "modelset.cli",
                    "leaderboard",
                    "submit",
                    "--archive",
                    str(path),
                    "--method",
                    name,
                    "--results",
                    out,
                ],
                check=True,
                capture_output=True,
            )
            dt = time.perf_counter() - t
            total += dt
            print(f"| {name} | {dt:.1f} |", flush=True)
    print(f"| **total** | **{total:.1f}** ({total / BUDGET:.2f}x the {BUDGET:.0f} s budget) |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", nargs="+", default=["data/digits500.h5"])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--rows", help="only the ablation rows whose name contains this text")
    ap.add_argument("--no-board", action="store_true")
    ap.add_argument("--leaderboard", action="store_true")
    ap.add_argument("--methods", help="comma-separated built-ins for the board (default: every weights-only one)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)  # as the leaderboard's child runs it: one core per method
    print(describe() + "; one torch thread (a load average above 1: the times are under contention)")
    if not args.no_ablation:
        print(f"\n## ablation on {Path(args.archive[0]).name} (seeds {args.seeds})\n")
        print("| variant | retrieval mAP | task_id top1 | s/seed |\n|---|---|---|---|")
        ms = modelset.load(args.archive[0])
        for row, cls, options in ABLATION:
            if args.rows and args.rows not in row:
                continue
            r, dt = measure(ms, variant(cls, options), seeds)
            print(f"| {row} | {cell(r['retrieval.map'])} | {cell(r['task_id.top1'])} | {dt:.1f} |", flush=True)
    if not args.no_board:
        for path in args.archive:
            board(path, seeds, args.methods.split(",") if args.methods else None)
    if args.leaderboard:
        leaderboard_time(args.archive[0])
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    with recorded("learners"):
        main()
