"""Batched engine vs reference loop on the same digits500 work units, in one run.

Prints, for each engine: models per second, achieved GFLOP/s and that rate as a fraction of a
matmul measured in the same run; the ratio between the engines; the profile of the batched
engine (where its time goes); peak RSS; and, unless --no-build, the wall time and peak RSS of
`modelset build --preset digits500 --force`, the build step of `make modelset`.

Timings are noisy on a shared machine, so engines are timed interleaved, unit by unit, and each
unit's best of --rounds counts; compare the ratios, not absolute figures across runs. Everything
runs pinned to one torch thread, as every work unit of a build does.

    python benchmarks/bench_batched.py [--units 4] [--rounds 2] [--no-build] [--reference-build]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from builders.batched import train_batched
from builders.plan import make_plan, work_units
from builders.train import train_reference
from modelset.preset import load_preset

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, flops: float, seconds: float = 1.0) -> float:
    """Best GFLOP/s of ``fn`` over a few timed bursts."""
    fn()
    best = 0.0
    for _ in range(3):
        t, k = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 3:
            fn()
            k += 1
        best = max(best, flops * k / (time.perf_counter() - t) / 1e9)
    return best


def matmul_rates() -> dict:
    """torch.mm (MKL sgemm) and a GEMM through oneDNN (1x1 convolution), one thread each: MKL
    takes its AVX2 path on AMD CPUs, oneDNN uses AVX-512, so the second is the higher ceiling."""
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    x = torch.randn(64, 512, 16, 16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 1, 1).contiguous(memory_format=torch.channels_last)
    return {"torch.mm": rate(lambda: a @ b, 2 * n**3),
            "oneDNN 1x1 conv": rate(lambda: F.conv2d(x, w), 2 * 64 * 256 * 512 * 512)}


def fma_peak() -> float | None:
    """This core's peak fp32 FMA rate (benchmarks/fma_peak.c, best of 3), or None where no C
    compiler builds it: the ceiling no engine can pass."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        try:
            subprocess.run([cc, "-O2", "-march=native", "-o", str(exe), str(ROOT / "benchmarks" / "fma_peak.c")],
                           check=True, capture_output=True)
            return max(float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()[0])
                       for _ in range(3))
        except (subprocess.CalledProcessError, OSError, ValueError):
            return None


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """torch's formula, but with the weight gradient of a grouped convolution divided by the
    groups: torch 2.14's counts it as if ungrouped (10x too much for a unit of 10 models)."""
    assert not transposed
    t = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731
    flops = conv_flop_count(grad_out_shape, w_shape, out_shape[0], transposed=True) if output_mask[0] else 0
    if output_mask[1]:
        flops += conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), transposed=False) // groups
    return flops


def conv_kernels_rate(M: int, batch: int = 32) -> float:
    """GFLOP/s of the unit's convolution kernels alone (forward, data and weight gradients of the
    3 grouped layers, as the batched engine calls them): what the engine would reach if nothing
    else cost anything."""
    aten, cl = torch.ops.aten, torch.channels_last
    calls = []
    for cin in (1, 16, 16):
        x = torch.randn(batch, M * cin, 8, 8).contiguous(memory_format=cl)
        w = torch.randn(M * 16, cin, 3, 3).contiguous(memory_format=cl)
        g = torch.randn(batch, M * 16, 8, 8).contiguous(memory_format=cl)
        args = (g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], M)
        calls.append(lambda x=x, w=w: F.conv2d(x, w, None, padding=1, groups=M))
        calls.append(lambda args=args: aten.convolution_backward(*args, [False, True, False]))
        if cin > 1:
            calls.append(lambda args=args: aten.convolution_backward(*args, [True, False, False]))
    flops = count_flops(lambda: [c() for c in calls])
    return rate(lambda: [c() for c in calls], flops)


def count_flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as fc:
        fn()
    return fc.get_total_flops()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peak_tree_rss(proc: subprocess.Popen, every: float = 0.05) -> tuple[threading.Thread, dict]:
    """Sample the summed RSS of ``proc`` and its descendants until it exits, and their CPU time."""
    peak = {"rss": 0, "cpu": {}}

    def sample():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [p, *p.children(recursive=True)]
                peak["rss"] = max(peak["rss"], sum(c.memory_info().rss for c in tree))
                for c in tree:
                    t = c.cpu_times()
                    peak["cpu"][c.pid] = t.user + t.system
            except psutil.Error:
                pass
            time.sleep(every)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    return t, peak


def timed_command(cmd: list[str]) -> tuple[float, int, float]:
    """Run ``cmd`` (from the repository root): its wall time, the peak summed RSS of its process
    tree and that tree's CPU seconds; a failure ends the benchmark with its stderr."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    sampler, peak = peak_tree_rss(proc)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed: {stderr.strip()}")
    return wall, peak["rss"], sum(peak["cpu"].values())


def time_build(engine: str, jobs: int) -> tuple[float, int, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "digits500.h5"
        wall, rss, cpu = timed_command([sys.executable, "-m", "modelset.cli", "build", "--preset", "digits500",
                                        "--out", str(out), "--jobs", str(jobs), "--force", "--no-progress",
                                        "--engine", engine])
        info = subprocess.run([sys.executable, "-m", "modelset.cli", "info", str(out)], capture_output=True,
                              text=True).stdout
        acc = next((line for line in info.splitlines() if line.startswith("test accuracy")), "")
    return wall, rss, cpu, acc


def profile_batched(unit, rows: int = 14) -> str:
    from torch.profiler import profile

    # Kineto prints start/stop notes on the C-level stderr; keep them out of the report.
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            with profile() as prof:
                train_batched(unit)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=4, help="digits500 work units timed per engine (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="timings per unit and engine; the best counts")
    ap.add_argument("--no-build", action="store_true", help="skip timing the full digits500 build")
    ap.add_argument("--reference-build", action="store_true", help="also time the full build with the reference")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes of the timed build")
    args = ap.parse_args()

    torch.set_num_threads(1)  # as every work unit of a build
    preset = load_preset("digits500")
    units = work_units(make_plan(preset))
    # Spread over the plan: tasks differ in train-set size.
    units = [units[i * len(units) // args.units] for i in range(args.units)]
    n_models = sum(len(u) for u in units)
    print(f"digits500: {n_models} models in {len(units)} work units of {len(units[0])}, "
          f"{preset['train']['epochs']} epochs, 1 torch thread, {os.cpu_count()} CPUs, torch {torch.__version__}")

    # Useful work, counted once on the reference (the batched engine does the same maths).
    flops = sum(count_flops(lambda: train_reference(u[0])) * len(u) for u in units)
    flops_batched = count_flops(lambda: train_batched(units[0])) * len(units)  # executed, all units alike
    print(f"FLOPs (torch.utils.flop_counter): {flops / n_models / 1e9:.2f} GFLOP per model "
          f"(batched engine executes {flops_batched / flops:.3f}x that)")

    mm_before = matmul_rates()
    engines = {"reference": lambda u: [train_reference(e) for e in u], "batched": train_batched}
    best = {name: [float("inf")] * len(units) for name in engines}
    for _ in range(args.rounds):
        for i, u in enumerate(units):
            for name, fn in engines.items():
                best[name][i] = min(best[name][i], timed(lambda: fn(u)))
    conv_rate = conv_kernels_rate(len(units[0]))
    mm_after = matmul_rates()
    mm = {k: max(mm_before[k], mm_after[k]) for k in mm_before}
    peak = fma_peak()

    print(f"\nmatmul in this run, 1 thread: torch.mm {mm['torch.mm']:.0f} GFLOP/s, "
          f"oneDNN 1x1 conv {mm['oneDNN 1x1 conv']:.0f} GFLOP/s; FMA peak of one core "
          + (f"{peak:.0f} GFLOP/s (benchmarks/fma_peak.c)" if peak else "not measured (no C compiler built benchmarks/fma_peak.c)"))
    print(f"{'engine':<24}{'models/s':>10}{'GFLOP/s':>10}{'of mm':>8}{'of oneDNN':>11}")
    total = {name: sum(ts) for name, ts in best.items()}
    for name, t in total.items():
        g = flops / t / 1e9
        print(f"{name:<24}{n_models / t:>10.2f}{g:>10.1f}{g / mm['torch.mm']:>8.0%}{g / mm['oneDNN 1x1 conv']:>11.0%}")
    ratio = total["reference"] / total["batched"]
    print(f"ratio batched / reference: {ratio:.2f}x   goal >= 5x")
    ceiling = conv_rate / (flops / total["reference"] / 1e9)
    print(f"the unit's grouped-convolution kernels alone run at {conv_rate:.0f} GFLOP/s: the batched engine "
          f"reaches {flops / total['batched'] / 1e9 / conv_rate:.0%} of that; even at 100% the ratio would "
          f"be {ceiling:.1f}x")
    if peak:
        ref_rate = flops / total["reference"] / 1e9
        print(f"the reference loop runs at {ref_rate / peak:.0%} of the core's FMA peak: 5x would need "
              f"{5 * ref_rate:.0f} GFLOP/s ({5 * ref_rate / peak:.0%} of the peak); at the peak itself, with "
              f"nothing else costing anything, the ratio would be {peak / ref_rate:.1f}x")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

    print("\nwhere the batched engine's time goes (one unit, torch.profiler):")
    print(profile_batched(units[0]))

    builds = [] if args.no_build else ["batched"] + (["reference"] if args.reference_build else [])
    for engine in builds:
        wall, rss, cpu, acc = time_build(engine, args.jobs)
        print(f"modelset build --preset digits500 --force --jobs {args.jobs} --engine {engine}: "
              f"{wall:.1f} s wall, peak RSS of the process tree {rss / 2**30:.2f} GiB  (goal <= 120 s, < 2 GiB)")
        print(f"  {cpu:.0f} CPU-seconds in its processes: >= {cpu / min(args.jobs, os.cpu_count()):.0f} s wall "
              f"on {min(args.jobs, os.cpu_count())} otherwise idle cores; load average now "
              f"{os.getloadavg()[0]:.1f}")
        print(f"  {acc}")


if __name__ == "__main__":
    main()
