"""The batched engine against the reference loop and the core's FMA peak, in one run (`make bench`).

Prints the machine (CPU, cores, vector width, the fp32 FMA peak of each width, measured now by
benchmarks/fma_peak.c); for digits500 (small_cnn) and one fashion-mnist500 unit (small_cnn_zoo,
where the files are) each engine's models per second, GFLOP/s and share of that peak, their
ratio, and the convolutions inside the batched engine, kernel by kernel as oneDNN names and times
them, with the ratio they alone would allow; the batched engine's profile; the projected build
time of every built-in preset on this machine; and, unless --no-build, the wall time and peak RSS
of `modelset build --preset digits500 --force`, the build step of `make modelset`, beside its floor
(its FLOPs at the convolutions' rate).

Everything runs pinned to one torch thread, as every work unit of a build does, and is timed by
that thread's CPU time: on a shared machine other processes delay a run but barely lengthen its
CPU time (they still share caches and memory bandwidth). Engines are timed interleaved, unit by
unit, after one untimed run each, and each unit's best of --rounds counts; compare the ratios, not absolute figures across
runs. The full build is timed by the wall clock, with the load average beside it.

``--isa avx2`` runs the whole benchmark again with oneDNN, ATen and MKL held to AVX2
(benchmarks/machine.py ISA_ENV), as on a core without AVX-512; the machine line says which width
the kernels really ran at (oneDNN's own log) and quotes that width's FMA peak.

    python benchmarks/bench_batched.py [--isa native|avx2] [--units 4] [--rounds 2] [--no-projection] [--no-build]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ISA_ENV, describe, machine, reexec_at_requested_isa, watch_tree  # noqa: E402
from results import recorded  # noqa: E402

from builders.batched import train_batched  # noqa: E402
from builders.build import hold_freed_memory, train_unit  # noqa: E402
from builders.plan import make_plan, work_units  # noqa: E402
from builders.train import task_tensors, train_reference  # noqa: E402
from modelset.datasets import DATA_ENV  # noqa: E402
from modelset.errors import ModelsetError  # noqa: E402
from modelset.preset import list_presets, load_preset  # noqa: E402

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist

ROOT = Path(__file__).resolve().parents[1]


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape,
    **kwargs,
) -> int:
    """torch's formula, but with the weight gradient of a grouped convolution divided by the
    groups: torch 2.14's counts it as if ungrouped (10x too much for a unit of 10 models)."""
    assert not transposed
    t = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731
    flops = conv_flop_count(grad_out_shape, w_shape, out_shape[0], transposed=True) if output_mask[0] else 0
    if output_mask[1]:
        flops += conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), transposed=False) // groups
    return flops


_CONV = re.compile(r"(?:g(\d+))?mb(\d+)_ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+)sh(\d+)\D.*?_iw(\d+)ow(\d+)kw(\d+)")


def convolutions_in_engine(unit, root=None) -> tuple[float, float, float, list[str]]:
    """The convolutions inside one run of the batched engine on ``unit``, timed by oneDNN itself
    (its verbose log, which names the kernel it chose): their seconds; the seconds of the run that
    follows it without the log (thread CPU time; writing the log costs time of its own); their
    FLOPs (counted as torch's counter counts them, padded taps included); one line per kernel and
    layer. Their share of the run says what the engine would gain if nothing else cost anything;
    the two runs are back to back, so a machine whose speed drifts skews it little."""
    per: dict[str, list[float]] = {}
    with tempfile.TemporaryFile("w+") as log:
        sys.stdout.flush()
        saved = os.dup(1)  # oneDNN writes its log to the C-level stdout
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                train_batched(unit, data_root=root)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        run = timed(lambda: train_batched(unit, data_root=root))  # again, unlogged: logging costs time
        log.seek(0)
        for line in log:
            f = line.rstrip().split(",")
            if len(f) < 8 or f[3] != "exec" or f[5] != "convolution":
                continue
            g, mb, ic, oc, ih, oh, kh, sh, iw, ow, kw = (int(x) if x else 1 for x in _CONV.search(f[-2]).groups())
            key = f"{f[6]} {f[7]}, {ic // g}->{oc // g} per model, {ih}x{iw} stride {sh}"
            acc = per.setdefault(key, [0.0, 0.0])
            acc[0] += float(f[-1]) / 1e3
            acc[1] += 2.0 * mb * oc * oh * ow * (ic // g) * kh * kw
    if not per:
        raise SystemExit("oneDNN logged no convolution: is torch built with oneDNN (torch.backends.mkldnn)?")
    lines = [
        f"{k}: {t:.2f} s, {f / t / 1e9:.0f} GFLOP/s" for k, (t, f) in sorted(per.items(), key=lambda kv: -kv[1][0])
    ]
    return sum(t for t, _ in per.values()), run, sum(f for _, f in per.values()), lines


def count_flops(fn) -> int:
    with FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}
    ) as fc:
        fn()
    return fc.get_total_flops()


def build_flops(plan, root=None) -> float:
    """FLOPs of training a whole plan (its evaluations included), counted on the reference loop,
    the batched engine's arithmetic: one model per distinct (architecture, family, data size,
    recipe length, checkpoints), times the models like it. A sampled recipe changes a model's
    FLOPs only through its train fraction."""
    per_key, total = {}, 0.0
    for e in plan.entries:
        (xtr, _, xte, _), _, _ = task_tensors(e.dataset, e.classes, e.transform, root)
        n_train = max(1, round(e.hparams.get("train_fraction", 1.0) * len(xtr)))
        key = (e.arch, e.family, e.family_options, e.dataset, tuple(xtr.shape[1:]), len(e.classes), n_train, len(xte))
        key += (e.hparams["epochs"], e.hparams["batch_size"], e.checkpoints)
        if key not in per_key:
            per_key[key] = count_flops(lambda e=e: train_reference(e, data_root=root))
        total += per_key[key]
    return total


def timed(fn) -> float:
    """CPU seconds of this thread in ``fn``: its time on a free core, whatever else runs."""
    t = time.thread_time()
    fn()
    return time.thread_time() - t


def timed_command(cmd: list[str]) -> tuple[float, int, float]:
    """Run ``cmd`` (from the repository root): its wall time, the peak summed RSS of its process
    tree and that tree's CPU seconds; a failure ends the benchmark with its stderr."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    sampler, peak = watch_tree(proc, every=0.05)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed: {stderr.strip()}")
    return wall, peak["rss"], sum(peak["cpu"].values())


def time_build(engine: str, jobs: int) -> tuple[float, int, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "digits500.h5"
        wall, rss, cpu = timed_command(
            [
                sys.executable,
                "-m",
                "modelset.cli",
                "build",
                "--preset",
                "digits500",
                "--out",
                str(out),
                "--jobs",
                str(jobs),
                "--force",
                "--no-progress",
                "--engine",
                engine,
            ]
        )
        info = subprocess.run(
            [sys.executable, "-m", "modelset.cli", "info", str(out)], capture_output=True, text=True
        ).stdout
        acc = next((line for line in info.splitlines() if line.startswith("test accuracy")), "")
    return wall, rss, cpu, acc


def profile_batched(unit, root=None, rows: int = 12) -> str:
    from torch.profiler import profile

    # Kineto prints start/stop notes on the C-level stderr; keep them out of the report.
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            with profile() as prof:
                train_batched(unit, data_root=root)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def compare(units, rounds: int, root=None) -> dict:
    """Best time of each engine on each unit, the engines interleaved unit by unit so that the
    machine's load falls on both alike, after one untimed run of each (a build's worker pays its
    start, oneDNN's kernel generation and the first allocations, once for dozens of units); the
    sums per engine."""
    engines = {
        "reference": lambda u: [train_reference(e, data_root=root) for e in u],
        "batched": lambda u: train_batched(u, data_root=root),
    }
    best = {name: [float("inf")] * len(units) for name in engines}
    for fn in engines.values():  # untimed: oneDNN generates its kernels on first use, once per worker
        fn(units[0][:1] if fn is engines["reference"] else units[0])  # one reference model suffices
    for _ in range(rounds):
        for i, u in enumerate(units):
            for name, fn in engines.items():
                best[name][i] = min(best[name][i], timed(lambda fn=fn, u=u: fn(u)))
    return {name: sum(ts) for name, ts in best.items()}


def report_engines(label, units, rounds, peak, root=None) -> float:
    """Print both engines' rates on ``units`` and the convolutions inside the batched engine;
    return those convolutions' GFLOP/s."""
    n_models = sum(len(u) for u in units)
    flops = sum(count_flops(lambda u=u: train_reference(u[0], data_root=root)) * len(u) for u in units)
    hp = units[0][0].hparams
    print(
        f"\n{label}: {units[0][0].arch}, {n_models} models in {len(units)} work unit(s) of {len(units[0])}, "
        f"{hp['epochs']} epoch(s), {flops / n_models / 1e9:.2f} GFLOP per model (torch.utils.flop_counter)"
    )
    total = compare(units, rounds, root)
    print(f"  {'engine':<12}{'models/s':>10}{'GFLOP/s':>10}{'of peak':>9}")
    for name, t in total.items():
        g = flops / t / 1e9
        print(f"  {name:<12}{n_models / t:>10.2f}{g:>10.1f}{g / peak if peak else float('nan'):>9.0%}")
    print(f"  batched / reference: {total['reference'] / total['batched']:.2f}x   (target >= 3x)")
    conv_s, run, conv_flops, lines = convolutions_in_engine(units[0], root)
    g, share = conv_flops / conv_s / 1e9, conv_s / run
    print(
        f"  convolutions inside the batched engine (its first unit, timed by oneDNN): {conv_s:.2f} s "
        f"of a run's {run:.2f} s ({share:.0%}), {g:.0f} GFLOP/s"
        + (f" = {g / peak:.0%} of peak" if peak else "")
        + f"; were nothing else to cost anything, batched / reference would be at most "
        f"{total['reference'] / total['batched'] / share:.2f}x"
    )
    print("  by kernel (oneDNN's name) and layer:\n" + "\n".join(f"    {line}" for line in lines))
    return g


def project_presets(jobs: int, peak, root) -> None:
    """Each built-in preset's build time on this machine: its first work unit trained as a build
    trains it (one thread), times the number of units, over ``jobs`` workers."""
    print(f"\nprojected build time of each built-in preset, --jobs {jobs} (one work unit timed, x units / jobs):")
    for name in list_presets():
        try:
            plan = make_plan(load_preset(name), data_root=root)
        except ModelsetError as e:
            print(f"  {name:<22} not projected: {str(e).splitlines()[0][:110]}")
            continue
        units = work_units(plan)
        wall = timed(lambda units=units: train_unit(units[0], data_root=root))
        flops = count_flops(lambda units=units: train_reference(units[0][0], data_root=root)) * len(units[0])
        total = wall * len(units) / min(jobs, len(units))
        print(
            f"  {name:<22} {len(plan.entries):>5} models, {len(units):>4} units of {len(units[0]):>2}: "
            f"{wall:6.1f} s per unit -> {total / 60:6.1f} min; {flops / wall / 1e9:5.1f} GFLOP/s per core"
            + (f" = {flops / wall / 1e9 / peak:.0%} of peak" if peak else "")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--isa",
        choices=["native", *ISA_ENV],
        default="native",
        help="vector width to run at: native, or avx2 (oneDNN, ATen and MKL held to AVX2; runs itself again)",
    )
    ap.add_argument("--units", type=int, default=4, help="digits500 work units timed per engine (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="timings per unit and engine; the best counts")
    ap.add_argument(
        "--data-root",
        default=os.environ.get(DATA_ENV, DEBIAN_FASHION),
        help="where the Fashion-MNIST (and other) files are; default $MODELSET_DATA or " + DEBIAN_FASHION,
    )
    ap.add_argument("--no-projection", action="store_true", help="skip timing one unit of every built-in preset")
    ap.add_argument("--no-build", action="store_true", help="skip timing the full digits500 build")
    ap.add_argument("--reference-build", action="store_true", help="also time the full build with the reference")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="worker processes of builds")
    args = ap.parse_args()

    torch.set_num_threads(1)  # as every work unit of a build
    hold_freed_memory()  # as every build worker does (train_unit): both engines time without page faults
    m = machine()
    peak = m["fma_peak_gflops"]
    print(describe(m))
    print(
        "every figure below: one torch thread, as every work unit of a build, timed by its CPU time; "
        "another vector width: --isa avx2"
    )

    units = work_units(make_plan(load_preset("digits500")))
    conv_rate = report_engines(
        "digits500", [units[i * len(units) // args.units] for i in range(args.units)], args.rounds, peak
    )
    try:
        fashion = work_units(make_plan(load_preset("fashion-mnist500", ["epochs=1"]), data_root=args.data_root))[0]
    except ModelsetError as e:
        print(f"\nfashion-mnist500 not measured: {e}")
    else:
        report_engines("fashion-mnist500 at 1 epoch", [fashion], 1, peak, args.data_root)
        print("\nwhere the batched engine's time goes (one fashion-mnist500 unit, 1 epoch, torch.profiler):")
        print(profile_batched(fashion, args.data_root))
    print("\nwhere the batched engine's time goes (one digits500 unit, torch.profiler):")
    print(profile_batched(units[0]))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

    if not args.no_projection:
        project_presets(args.jobs, peak, args.data_root)
    builds = [] if args.no_build else ["batched"] + (["reference"] if args.reference_build else [])
    for engine in builds:
        wall, rss, cpu, acc = time_build(engine, args.jobs)
        print(
            f"\nmodelset build --preset digits500 --force --jobs {args.jobs} --engine {engine}: "
            f"{wall:.1f} s wall (target <= 90 s), peak RSS of the process tree {rss / 2**30:.2f} GiB"
        )
        print(
            f"  {cpu:.0f} CPU-seconds in its processes: >= {cpu / min(args.jobs, os.cpu_count()):.0f} s wall "
            f"on {min(args.jobs, os.cpu_count())} otherwise idle cores; load average now "
            f"{os.getloadavg()[0]:.1f}"
        )
        print(f"  {acc}")
    if builds:
        flops, cores = build_flops(make_plan(load_preset("digits500"))), min(args.jobs, os.cpu_count())
        print(
            f"  its floor: {flops / 1e12:.1f} TFLOP at the convolutions' rate inside the engine "
            f"({conv_rate:.0f} GFLOP/s) on {cores} cores, nothing else costing anything: "
            f"{flops / conv_rate / 1e9 / cores:.0f} s"
        )


if __name__ == "__main__":
    reexec_at_requested_isa(sys.argv)
    with recorded("bench_batched"):
        main()
