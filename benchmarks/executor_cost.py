"""What the local executor costs: the same build from two source trees, in one run.

Each build is ``modelset build --jobs N`` of the same preset, run from a source tree given with
--tree (its code on PYTHONPATH); trees alternate round by round, so a busy machine slows both alike.
For each build: the wall time, the CPU seconds and the peak memory of the whole process tree,
summed both as PSS (shared pages split among the processes that map them: the memory the build
really holds) and as RSS (shared pages counted in every process). It also checks that every tree
wrote the same weights. To compare an executor with an earlier one, export the earlier commit:

    git archive <commit> | tar -x -C /tmp/before
    python benchmarks/executor_cost.py --tree /tmp/before --tree . [--jobs 2] [--rounds 1]
                                       [--preset digits500] [--set tasks.count=8 ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, watch_tree  # noqa: E402
from results import recorded  # noqa: E402

DEFAULT_SET = ["tasks.count=8", "epochs=5"]


def run_build(tree: Path, preset: str, overrides: list[str], jobs: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "modelset.cli", "build", "--preset", preset, "--out", str(out)]
    cmd += ["--jobs", str(jobs), "--force", "--no-progress", *[a for s in overrides for a in ("--set", s)]]
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tree)
    sampler, peak = watch_tree(proc, pss=True)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"build from {tree} failed: {stderr.strip()}")
    return {"wall": wall, "cpu": sum(peak["cpu"].values()), **{k: peak[k] for k in ("pss", "rss", "procs")}}


def weights(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {a: f[f"architectures/{a}/params"][()].tobytes() for a in f["architectures"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", type=Path, required=True, help="a source tree (repeat)")
    ap.add_argument("--preset", default="digits500")
    ap.add_argument("--set", action="append", dest="overrides", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    overrides = DEFAULT_SET if args.overrides is None else args.overrides
    print(describe(), flush=True)
    print(f"{args.preset} with {' '.join(overrides)}, --jobs {args.jobs}, {args.rounds} round(s)", flush=True)
    runs: dict[Path, list[dict]] = {t: [] for t in args.tree}
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        first = None
        for r in range(args.rounds):
            for i, tree in enumerate(args.tree):
                out = Path(tmp) / f"{i}.h5"
                m = run_build(tree, args.preset, overrides, args.jobs, out)
                runs[tree].append(m)
                w = weights(out)
                first = first or w
                same &= w == first
                print(
                    f"round {r + 1} {tree}: {m['wall']:.1f} s wall, {m['cpu']:.0f} s CPU, peak {m['pss'] / 2**20:.0f} MiB "
                    f"PSS ({m['rss'] / 2**20:.0f} MiB summed RSS), {m['procs']} processes",
                    flush=True,
                )
    base = args.tree[0]
    best = {t: {k: min(m[k] for m in ms) for k in ("wall", "pss", "rss")} for t, ms in runs.items()}
    for tree in args.tree[1:]:
        b, o = best[base], best[tree]
        print(
            f"{tree} / {base} (best of each): wall {o['wall'] / b['wall']:.2f}, peak PSS {o['pss'] / b['pss']:.2f} "
            f"({(o['pss'] - b['pss']) / 2**20:+.0f} MiB), peak summed RSS {o['rss'] / b['rss']:.2f}"
        )
    print(f"same weights from every tree: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    with recorded("executor_cost"):
        sys.exit(main())
