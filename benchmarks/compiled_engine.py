"""The batched engine eager and under torch.compile (inductor's CPU backend), in one run.

Trains one digits500 work unit (and one fashion-mnist500 unit at 1 epoch, where the files are) with
the engine as it is, then with its forward and backward passes (`_GroupedCNN.forward`, `.backward`)
compiled by torch.compile, and prints for each: the first run's wall time (the compiled one's holds
the compilation), the best later run by the thread's CPU time, the ratio of the two engines, and
how far the compiled weights are from the eager ones. Prints the machine and the FMA peak first.
One torch thread, as every work unit of a build.

    python benchmarks/compiled_engine.py [--isa native|avx2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batched import DEBIAN_FASHION  # noqa: E402
from machine import ISA_ENV, describe, machine, reexec_at_requested_isa  # noqa: E402
from results import recorded  # noqa: E402

from builders import batched  # noqa: E402
from builders.build import hold_freed_memory  # noqa: E402
from builders.plan import make_plan, work_units  # noqa: E402
from modelset.datasets import DATA_ENV  # noqa: E402
from modelset.errors import ModelsetError  # noqa: E402
from modelset.preset import load_preset  # noqa: E402


def runs(unit, root, rounds: int) -> tuple[float, float, list]:
    """The first run's wall time, the best of ``rounds`` later runs' thread CPU time, the weights."""
    t = time.perf_counter()
    results = batched.train_batched(unit, data_root=root)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        batched.train_batched(unit, data_root=root)
        best = min(best, time.thread_time() - t)
    return first, best, [r.params for r in results]


def compare(label, unit, root, rounds) -> None:
    eager_first, eager, w_eager = runs(unit, root, rounds)
    cls, saved = batched._GroupedCNN, (batched._GroupedCNN.forward, batched._GroupedCNN.backward)
    cls.forward, cls.backward = torch.compile(cls.forward), torch.compile(cls.backward)
    try:
        compiled_first, compiled, w_compiled = runs(unit, root, rounds)
    finally:
        cls.forward, cls.backward = saved
        torch._dynamo.reset()
    diff = max(float(np.abs(a - b).max()) for a, b in zip(w_eager, w_compiled))
    print(f"\n{label}: {unit[0].arch}, {len(unit)} models, {unit[0].hparams['epochs']} epoch(s)")
    print(f"  eager:    first run {eager_first:6.1f} s wall, then {eager:6.2f} s CPU")
    print(f"  compiled: first run {compiled_first:6.1f} s wall (compiling), then {compiled:6.2f} s CPU")
    print(f"  compiled / eager, after compiling: {compiled / eager:.2f}x the time")
    print(f"  weights: largest difference from eager {diff:.1e}" + (" (bit-identical)" if diff == 0 else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", choices=["native", *ISA_ENV], default="native", help="vector width to run at")
    ap.add_argument("--rounds", type=int, default=2, help="timed runs after the first; the best counts")
    ap.add_argument("--data-root", default=os.environ.get(DATA_ENV, DEBIAN_FASHION))
    args = ap.parse_args()
    torch.set_num_threads(1)
    hold_freed_memory()
    # inductor's cache holds code for the width it compiled at: a cache shared across --isa runs
    # crashed torch here, so each run compiles into a cache of its own.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    m = machine()
    print(describe(m))
    compare("digits500", work_units(make_plan(load_preset("digits500")))[0], None, args.rounds)
    try:
        fashion = work_units(make_plan(load_preset("fashion-mnist500", ["epochs=1"]), data_root=args.data_root))[0]
    except ModelsetError as e:
        print(f"\nfashion-mnist500 not measured: {e}")
    else:
        compare("fashion-mnist500 at 1 epoch", fashion, args.data_root, args.rounds)


if __name__ == "__main__":
    reexec_at_requested_isa(sys.argv)
    with recorded("compiled_engine"):
        main()
