"""One shuffled epoch over every model of a 2,000-model archive, three ways, in one run:

- ``dataset``: ``WeightSpaceDataset`` (nfn layout) and a ``DataLoader`` over ``ChunkBatchSampler``
  batches of 64 (each h5py chunk read about once);
- ``per-item``: one model at a time through h5py, in random order (each read decompresses the
  chunk that holds the model);
- ``in-memory``: the whole parameter matrix read at once, then random batches of 64 sliced from it
  (its load time counted, and given apart).

Each figure is the median of 3 runs.
Each way runs in its own process, so its peak memory (the peak RSS, reset by /proc/self/clear_refs
once the process has imported and opened what it needs, minus the RSS then) is its own; the same three run on a 500-model archive to show what grows with the archive.
The archives (digits500's recipe at 1 epoch: 500 and 2,000 models) are built under ``--workdir``
(default data/bench/loader, ignored by git) and reused while up to date.

    .venv/bin/python benchmarks/loader_speed.py [--workdir DIR] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402
from results import recorded  # noqa: E402

BATCH = 64


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024


def _reset_peak() -> float:
    """Linux: reset the peak RSS (VmHWM) to the current RSS, which is returned (MiB)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mib("VmRSS:")


def _run(way: str, path: str, queue) -> None:
    import h5py
    import numpy as np
    import torch

    from modelset.weightspace import WeightSpaceDataset

    torch.set_num_threads(1)
    n, load, setup = 0, 0.0, 0.0
    if way == "dataset":
        t = time.perf_counter()  # opening the archive and its tables: once, not per epoch
        ds = WeightSpaceDataset(path, "task_id", "all", "test_acc", layout="nfn")  # every model once
        setup = time.perf_counter() - t
        base = _reset_peak()
        t0 = time.perf_counter()
        for _, y in ds.loader(batch_size=BATCH, shuffle=True):
            n += len(y)
    else:
        base = _reset_peak()
        t0 = time.perf_counter()
        with h5py.File(path, "r") as f:
            d = f["architectures/small_cnn/params"]
            rng = np.random.default_rng(0)
            if way == "per-item":
                for row in rng.permutation(d.shape[0]):
                    x = torch.from_numpy(d[int(row)])
                    n += 1
            else:
                matrix = torch.from_numpy(d[()])
                load = time.perf_counter() - t0
                for batch in torch.from_numpy(rng.permutation(len(matrix))).split(BATCH):
                    x = matrix[batch]
                    n += len(x)
    seconds = time.perf_counter() - t0
    queue.put(
        {
            "way": way,
            "models": n,
            "seconds": seconds,
            "load": load,
            "setup": setup,
            "peak_mib": _status_mib("VmHWM:") - base,
        }
    )


def measure(way: str, path: str) -> dict:
    ctx = mp.get_context("spawn")  # a fresh process: its peak memory is this way's alone
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(way, path, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join("data", "bench", "loader"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    print(describe())
    from builders.build import build
    from modelset.preset import load_preset

    os.makedirs(args.workdir, exist_ok=True)
    sizes = {}
    for seeds in (10, 40):  # 50 tasks x seeds: 500 and 2,000 models
        path = os.path.join(args.workdir, f"digits-{seeds * 50}.h5")
        t = time.perf_counter()
        build(load_preset("digits500", [f"seeds={seeds}", "epochs=1"]), path, jobs=args.jobs, progress=False)
        print(f"{path}: {seeds * 50} models ({time.perf_counter() - t:.0f} s to build or check)", flush=True)
        sizes[seeds * 50] = path
    print("\n| models | way | seconds | models/s | vs in-memory | peak memory above start |")
    print("|---|---|---|---|---|---|")
    for n, path in sizes.items():
        results = {}
        for way in ("in-memory", "dataset", "per-item"):  # the median of 3 runs: the machine may be shared
            runs = sorted((measure(way, path) for _ in range(3)), key=lambda r: r["seconds"])
            results[way] = runs[1]
        ref = results["in-memory"]["seconds"]
        for way, r in results.items():
            assert r["models"] == n, r
            load = (
                f" (load {r['load']:.2f} s)" if r["load"] else f" (+ {r['setup']:.2f} s to open)" if r["setup"] else ""
            )
            print(
                f"| {n} | {way} | {r['seconds']:.2f}{load} | {n / r['seconds']:,.0f} | "
                f"{r['seconds'] / ref:.2f}x | {r['peak_mib']:.1f} MiB |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    with recorded("loader_speed"):
        sys.exit(main())
