"""fashion-mnist500 on the real Fashion-MNIST files: build time, accuracy per task, archive size, and
the leaderboard of every built-in method on it, in one run.

Cores differ about 2.7x between machines, so beside every time this prints the machine, the
core's fp32 FMA peak measured in the same run (benchmarks/fma_peak.c) and the share of that peak
the build used (its FLOPs counted by torch's FlopCounterMode: bench_batched.build_flops). It also times one
work unit with torch on one thread and on two, against the two single-threaded processes a build
uses, which is why a build pins every unit to one thread and runs one process per core.

    .venv/bin/python benchmarks/fashion_mnist_zoo.py [--data-root DIR] [--out DIR] [--jobs N]
        [--no-leaderboard] [--no-threads]

DIR defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batched import build_flops, timed_command  # noqa: E402
from machine import describe, machine  # noqa: E402
from results import recorded  # noqa: E402

import modelset  # noqa: E402
from builders.batched import train_batched  # noqa: E402
from builders.plan import make_plan, work_units  # noqa: E402
from metrics.methods import BUILTIN  # noqa: E402
from modelset.preset import load_preset  # noqa: E402

PRESET = "fashion-mnist500"
DEBIAN = "/usr/share/datasets/fashion-mnist"


def time_threads(plan, root) -> dict:
    """One work unit trained with torch on 1 thread and on 2 (best of 2 each, 1 epoch)."""
    unit = work_units(make_plan(load_preset(PRESET, ["epochs=1"]), data_root=root))[0]
    train_batched(unit[:1], data_root=root)  # warm-up: data read, kernels initialised
    out = {}
    old = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                train_batched(unit, data_root=root)
                best = min(best, time.perf_counter() - t)
            out[n] = best
    finally:
        torch.set_num_threads(old)
    return out


def build(root: str, out: Path, jobs: int) -> dict:
    wall, rss, cpu = timed_command(
        [
            sys.executable,
            "-m",
            "modelset.cli",
            "build",
            "--preset",
            PRESET,
            "--data-root",
            root,
            "--out",
            str(out.resolve()),
            "--force",
            "--no-progress",
            "--jobs",
            str(jobs),
        ]
    )
    return {"wall_s": wall, "peak_rss_gib": rss / 2**30, "cpu_s": cpu}


def accuracy_table(path: Path) -> tuple[str, dict]:
    with modelset.load(path) as ms:
        m, tasks = ms.models, ms.tasks
    g = m.groupby("task")["test_acc"].agg(["mean", "min", "max"]).join(tasks["name"])
    g = g.sort_values("min")
    rows = ["| task | classes | test acc mean | min | max |", "|---|---|---|---|---|"]
    rows += [f"| {t} | {r['name']} | {r['mean']:.4f} | {r['min']:.4f} | {r['max']:.4f} |" for t, r in g.iterrows()]
    acc = m["test_acc"].to_numpy()
    summary = {
        "mean": float(acc.mean()),
        "min": float(acc.min()),
        "p5": float(np.quantile(acc, 0.05)),
        "median": float(np.median(acc)),
        "below_0.9": int((acc < 0.9).sum()),
        "below_0.7": int((acc < 0.7).sum()),
        "train_acc_mean": float(m["train_acc"].mean()),
        "hardest": g["name"].head(5).tolist(),
    }
    return "\n".join(rows), summary


def leaderboard(path: Path, root: str, results: Path) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    times = {}
    for name in BUILTIN:
        t = time.perf_counter()
        r = subprocess.run(
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
                str(results),
                "--data-root",
                root,
            ],  # the probe's data
            capture_output=True,
            text=True,
            env=env,
        )
        times[name] = time.perf_counter() - t
        print(f"  {name}: {r.stdout.strip() or r.stderr.strip()} ({times[name]:.0f} s)", flush=True)
        if r.returncode:
            raise SystemExit(f"leaderboard submit --method {name} failed: {r.stderr.strip()}")
    return (results / "leaderboard.md").read_text(), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=DEBIAN)
    ap.add_argument("--out", default="data/bench-fashion", help="directory for the archive and the reports")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--no-leaderboard", action="store_true")
    ap.add_argument("--no-threads", action="store_true", help="skip timing a unit on 1 vs 2 threads")
    args = ap.parse_args()
    args.data_root = os.path.abspath(args.data_root)  # the build runs from the repository root
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine()}
    peak = report["machine"]["fma_peak_gflops"]
    print(describe(report["machine"]), flush=True)
    plan = make_plan(load_preset(PRESET), data_root=args.data_root)
    flops = build_flops(plan, args.data_root)
    if not args.no_threads:
        th = report["unit_seconds_by_threads"] = time_threads(plan, args.data_root)
        print(
            f"one unit (10 models, 1 epoch): 1 thread {th[1]:.1f} s, 2 threads {th[2]:.1f} s "
            f"(2 threads = {th[1] / th[2]:.2f}x one; 2 processes of 1 thread at best 2x)",
            flush=True,
        )
    archive = out / f"{PRESET}.h5"
    b = report["build"] = build(args.data_root, archive, args.jobs)
    b["archive_mib"] = archive.stat().st_size / 2**20
    b["tflop"] = flops / 1e12
    b["gflops_per_core"] = flops / b["wall_s"] / min(args.jobs, os.cpu_count()) / 1e9
    share = f", {b['gflops_per_core'] / peak:.0%} of the FMA peak" if peak else ""
    print(
        f"build --jobs {args.jobs}: {b['wall_s']:.0f} s wall ({b['wall_s'] / 60:.1f} min), {b['cpu_s']:.0f} s CPU, "
        f"peak RSS {b['peak_rss_gib']:.2f} GiB, archive {b['archive_mib']:.1f} MiB; {b['tflop']:.1f} TFLOP = "
        f"{b['gflops_per_core']:.0f} GFLOP/s per core{share}",
        flush=True,
    )
    table, summary = accuracy_table(archive)
    report["accuracy"] = summary
    (out / "accuracy.md").write_text(table + "\n")
    print(
        f"test accuracy: mean {summary['mean']:.4f}, min {summary['min']:.4f}, p5 {summary['p5']:.4f}, "
        f"{summary['below_0.9']} models below 0.9, {summary['below_0.7']} below 0.7; hardest tasks: "
        f"{', '.join(summary['hardest'])}\n{table}",
        flush=True,
    )
    if not args.no_leaderboard:
        board, times = leaderboard(archive, args.data_root, out / "leaderboard")
        report["leaderboard_seconds"] = times
        print(f"leaderboard ({sum(times.values()):.0f} s for {len(times)} methods):\n{board}", flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    with recorded("fashion_mnist_zoo"):
        sys.exit(main())
