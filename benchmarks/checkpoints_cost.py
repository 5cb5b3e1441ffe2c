"""What checkpoints cost the batched engine: the same zoo with and without them, in one run.

Two measurements, each as a ratio (with / without checkpoints):
- work units: the same units of the zoo trained by ``train_batched`` in this process, one torch
  thread as in a build, the two variants interleaved unit by unit, best of --rounds each (the
  ratio holds on a shared machine even where the absolute times do not);
- builds: ``modelset build --jobs N`` of the whole zoo, without and with checkpoints (wall time,
  CPU seconds, archive size).
It also prints the machine, the load average at the start and the core's fp32 FMA peak measured
in the same run (benchmarks/fma_peak.c), so that absolute figures can be scaled to another core.

    python benchmarks/checkpoints_cost.py [--preset digits-sweep] [--set tasks.count=1 ...]
                                          [--units 4] [--rounds 2] [--jobs 2] [--no-build]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batched import timed_command  # noqa: E402
from machine import describe, machine  # noqa: E402
from results import recorded  # noqa: E402

from builders.batched import train_batched  # noqa: E402
from builders.build import pinned_threads  # noqa: E402
from builders.plan import make_plan, work_units  # noqa: E402
from modelset.preset import load_preset  # noqa: E402

NONE = "checkpoints=[]"


def unit_ratio(preset: str, overrides: list[str], n_units: int, rounds: int) -> dict:
    """Best seconds per unit without and with checkpoints, interleaved, over the first units."""
    plans = {k: make_plan(load_preset(preset, overrides + extra)) for k, extra in (("without", [NONE]), ("with", []))}
    units = {k: work_units(p)[:n_units] for k, p in plans.items()}
    best = {k: [float("inf")] * n_units for k in units}
    with pinned_threads(1):
        for _ in range(rounds):
            for i in range(n_units):
                for k in ("without", "with"):
                    t = time.perf_counter()
                    train_batched(units[k][i])
                    best[k][i] = min(best[k][i], time.perf_counter() - t)
    out = {k: sum(v) for k, v in best.items()}
    out["models"] = sum(len(u) for u in units["with"])
    out["checkpoints"] = list(plans["with"].preset.checkpoints)
    return out


def build_ratio(preset: str, overrides: list[str], jobs: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, extra in (("without", [NONE]), ("with", [])):
            path = Path(tmp) / f"{k}.h5"
            sets = [a for s in overrides + extra for a in ("--set", s)]
            wall, rss, cpu = timed_command(
                [
                    sys.executable,
                    "-m",
                    "modelset.cli",
                    "build",
                    "--preset",
                    preset,
                    "--out",
                    str(path),
                    "--jobs",
                    str(jobs),
                    "--force",
                    "--no-progress",
                    *sets,
                ]
            )
            out[k] = {
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_gib": rss / 2**30,
                "archive_mib": path.stat().st_size / 2**20,
            }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits-sweep", help="a preset with checkpoints")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=None,
        help="override, as modelset build --set (default: tasks.count=1, a quarter of digits-sweep)",
    )
    ap.add_argument("--units", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    overrides = ["tasks.count=1"] if args.overrides is None else args.overrides
    if not load_preset(args.preset, overrides).checkpoints:
        raise SystemExit(f"preset {args.preset} keeps no checkpoints; pick one that does (digits-sweep)")
    report = {"machine": machine(), "preset": args.preset, "overrides": overrides}
    print(describe(report["machine"]), flush=True)
    u = report["units"] = unit_ratio(args.preset, overrides, args.units, args.rounds)
    print(
        f"{args.units} work units ({u['models']} models, checkpoints {u['checkpoints']}), 1 thread, best of "
        f"{args.rounds}: without {u['without']:.2f} s, with {u['with']:.2f} s: time ratio "
        f"{u['with'] / u['without']:.3f}",
        flush=True,
    )
    if not args.no_build:
        b = report["builds"] = build_ratio(args.preset, overrides, args.jobs)
        w, c = b["without"], b["with"]
        print(
            f"build --jobs {args.jobs}: without {w['wall_s']:.1f} s wall ({w['cpu_s']:.0f} s CPU, "
            f"{w['archive_mib']:.1f} MiB), with {c['wall_s']:.1f} s wall ({c['cpu_s']:.0f} s CPU, "
            f"{c['archive_mib']:.1f} MiB): time ratio {c['wall_s'] / w['wall_s']:.3f}, CPU ratio "
            f"{c['cpu_s'] / w['cpu_s']:.3f}, archive size ratio {c['archive_mib'] / w['archive_mib']:.2f}",
            flush=True,
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    with recorded("checkpoints_cost"):
        sys.exit(main())
