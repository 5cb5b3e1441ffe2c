"""A preset's build and its leaderboard of every built-in method, each timed against its budget.

    .venv/bin/python benchmarks/preset_board.py --preset digits-sweep [--out DIR] [--jobs N]
        [--build-budget S] [--board-budget S] [--no-build] [--timeout S] [--board-jobs N]

Prints the machine, the core's fp32 FMA peak measured in the same run (benchmarks/fma_peak.c), the
build's wall time with its ratio to the budget (default 900 s: the sweep's 15 min) and its share of
that peak (the build's FLOPs counted by torch's FlopCounterMode: bench_batched.build_flops), the
spread of test accuracy overall and per swept factor, then every built-in method's time and the
board, run as `make leaderboard` runs it, with its wall time against the board budget (default 300 s: `make
leaderboard` on digits500). Times move about 2.7x between machines: read them beside the FMA peak
printed with them.

    .venv/bin/python benchmarks/preset_board.py --preset digits500    # the board's 5-minute budget
    MODELSET_DATA=/usr/share/datasets/fashion-mnist .venv/bin/python benchmarks/preset_board.py \
        --preset fashion-mnist-scz --build-budget 1800 --board-budget 1200   # its 30 and 20 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batched import build_flops, timed_command  # noqa: E402
from machine import describe, machine  # noqa: E402
from results import recorded  # noqa: E402

import modelset  # noqa: E402
from builders.plan import make_plan  # noqa: E402
from metrics.leaderboard import render  # noqa: E402
from metrics.methods import BUILTIN  # noqa: E402
from modelset.preset import load_preset  # noqa: E402
from modelset.protocols import factor_codes, grid_factors, sample_bins  # noqa: E402


def spread(path: Path) -> tuple[str, dict]:
    """Test accuracy quantiles overall and per level of every swept factor, as a markdown table."""
    with modelset.load(path) as ms:
        m, bins = ms.models, sample_bins(ms)
        groups = [("all", m)]
        for k in grid_factors(ms):
            if k in bins:  # a sampled number: by the bins the hparams protocol scores
                codes = factor_codes(ms, k, m["id"].to_numpy())
                e = bins[k]
                groups += [(f"{k} in [{e[c]:.3g}, {e[c + 1]:.3g})", m[codes == c]) for c in np.unique(codes)]
            else:
                groups += [(f"{k} = {v}", g) for v, g in m.groupby(k)]
    q = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    rows = ["| models | n | mean | min | p10 | p25 | median | p75 | p90 | max | below 0.5 |", "|---" * 11 + "|"]
    for name, g in groups:
        v = g["test_acc"].to_numpy()
        rows.append(
            f"| {name} | {len(v)} | {v.mean():.3f} | "
            + " | ".join(f"{x:.3f}" for x in np.quantile(v, q))
            + f" | {np.mean(v < 0.5):.0%} |"
        )
    v = m["test_acc"].to_numpy()
    return "\n".join(rows), {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "median": float(np.median(v)),
        "below_0.5": float(np.mean(v < 0.5)),
    }


def board(path: Path, results: Path, timeout: float, jobs: int) -> tuple[str, dict, float]:
    """As `make leaderboard` runs it: ``jobs`` methods at a time, each on one torch thread, then one
    render. (board text, each method's wall time, the whole board's wall time)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every submission and its sandboxed child

    def one(name):
        t = timed_command(
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
                "--timeout",
                str(timeout),
            ]
        )[0]
        print(f"  {name}: {t:.1f} s", flush=True)
        return name, t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        times = dict(pool.map(one, BUILTIN))
    render(results)
    return (results / "leaderboard.md").read_text(), times, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits-sweep")
    ap.add_argument("--out", default="data/bench-board")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--build-budget", type=float, default=900.0)
    ap.add_argument("--board-budget", type=float, default=300.0)
    ap.add_argument("--no-build", action="store_true", help="reuse DIR/PRESET.h5")
    ap.add_argument("--timeout", type=float, default=900.0, help="each method's time limit (leaderboard --timeout)")
    ap.add_argument("--board-jobs", type=int, default=2, help="methods scored at a time (make leaderboard's LB_JOBS)")
    args = ap.parse_args()
    out = Path(args.out).resolve()  # commands run from the repository root
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "preset": args.preset}
    print(describe(report["machine"]), flush=True)
    archive = out / f"{args.preset}.h5"
    if not args.no_build:
        archive.unlink(missing_ok=True)
        wall, rss, cpu = timed_command(
            [
                sys.executable,
                "-m",
                "modelset.cli",
                "build",
                "--preset",
                args.preset,
                "--out",
                str(archive),
                "--jobs",
                str(args.jobs),
                "--no-progress",
            ]
        )
        flops = build_flops(make_plan(load_preset(args.preset)))  # $MODELSET_DATA, as the build's
        cores = min(args.jobs, len(os.sched_getaffinity(0)))
        per_core, peak = flops / wall / cores / 1e9, report["machine"]["fma_peak_gflops"]
        report["build"] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": rss / 2**30, "tflop": flops / 1e12}
        print(
            f"build --jobs {args.jobs}: {wall:.0f} s wall ({wall / 60:.1f} min) = {wall / args.build_budget:.2f} "
            f"of the {args.build_budget:.0f} s budget; {cpu:.0f} s CPU, peak RSS {rss / 2**30:.2f} GiB, "
            f"archive {archive.stat().st_size / 2**20:.0f} MiB; {flops / 1e12:.1f} TFLOP = {per_core:.1f} GFLOP/s "
            f"per core on {cores}" + (f" = {per_core / peak:.0%} of the FMA peak" if peak else ""),
            flush=True,
        )
    table, report["accuracy"] = spread(archive)
    print(f"test accuracy:\n{table}", flush=True)
    text, times, total = board(archive, out / "leaderboard", args.timeout, args.board_jobs)
    report["board_seconds"], report["method_seconds"] = total, times
    print(
        f"board: {total:.0f} s wall for {len(times)} methods, {args.board_jobs} at a time = "
        f"{total / args.board_budget:.2f} of the {args.board_budget:.0f} s budget\n{text}",
        flush=True,
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    with recorded("preset_board"):
        sys.exit(main())
