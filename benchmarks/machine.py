"""The machine a benchmark ran on, measured in the same run: every benchmark prints this line
beside its figures, because the same build runs 2-4x apart on cores of different speed and vector
width (oneDNN picks other kernels with AVX2 alone than with AVX-512).

    python benchmarks/machine.py     # prints the line and the peak of each vector width

A benchmark measures the vector width its kernels ran at, not the CPU's widest: ``measured_width``
asks oneDNN (a convolution run with ONEDNN_VERBOSE) and ATen which ISA they dispatched to, and the
peak quoted beside it is that width's. ``--isa avx2`` (``reexec_at``) runs a benchmark again with
oneDNN, ATen and MKL held to AVX2, as on a core without AVX-512.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return set()
    return set(
        next((line.split(":", 1)[1].split() for line in info.read_text().splitlines() if line.startswith("flags")), [])
    )


def vector_width(flags: set[str]) -> str:
    """The widest x86 fp32 FMA vector the CPU runs natively."""
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2"
    return "SSE" if flags else platform.machine()


# The environment that holds every kernel library torch calls to a vector width: oneDNN
# (convolutions), ATen's own kernels (elementwise, reductions) and MKL (matmul, bmm).
ISA_ENV = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def reexec_at_requested_isa(argv: list[str]) -> None:
    """``reexec_at`` the width a benchmark's ``--isa`` asks for (``--isa X`` or ``--isa=X``), before
    anything is measured or recorded: the whole run at that width."""
    isa = next((a.split("=", 1)[1] for a in argv if a.startswith("--isa=")), None)
    if "--isa" in argv[:-1]:
        isa = argv[argv.index("--isa") + 1]
    if isa in ISA_ENV:
        reexec_at(isa)


def reexec_at(isa: str) -> None:
    """Run this process again with ``ISA_ENV[isa]`` unless it already has it ("native": nothing);
    before the benchmark starts, so all of it runs at that width."""
    if isa == "native":
        return
    env = ISA_ENV[isa]
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})


_PROBE = (
    "import torch; torch.set_num_threads(1); "
    "torch.nn.functional.conv2d(torch.randn(2, 32, 8, 8).contiguous(memory_format=torch.channels_last), "
    "torch.randn(32, 16, 3, 3), groups=2)"
)


@cache
def onednn_isa() -> str:
    """The ISA oneDNN dispatches to in a process with this environment, from its verbose log
    ("Intel AVX2", "Intel AVX-512 with ..."), or "" where it says none."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, "ONEDNN_VERBOSE": "1"}, capture_output=True, text=True
    ).stdout
    m = re.search(r"cpu,isa:([^\n]*)", out)
    return m.group(1).strip() if m else ""


def measured_width(aten: str, onednn: str) -> int | None:
    """The vector width in bits that both ATen and oneDNN ran at (the narrower of the two)."""
    bits = []
    for name in (aten.upper(), onednn.upper()):
        if "512" in name:
            bits.append(512)
        elif "AVX2" in name or "AVX" in name:
            bits.append(256)
        elif name:
            bits.append(128)
    return min(bits) if bits else None


@cache
def fma_peaks() -> dict[int, float]:
    """This core's fp32 FMA peak in GFLOP/s per vector width in bits (benchmarks/fma_peak.c, one
    kernel per width the CPU has, none spilling), or {} where no C compiler builds it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        try:
            subprocess.run(
                [cc, "-O2", "-march=native", "-o", str(exe), str(HERE / "fma_peak.c")], check=True, capture_output=True
            )
            out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
        except (subprocess.CalledProcessError, OSError):
            return {}
    return {int(bits): float(rate) for bits, rate in (line.split() for line in out.splitlines())}


def fma_peak() -> float | None:
    """The best of ``fma_peaks()``: the rate no kernel on one core can pass."""
    peaks = fma_peaks()
    return max(peaks.values()) if peaks else None


def machine() -> dict:
    flags = cpu_flags()
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    peaks = fma_peaks()
    aten, onednn = torch.backends.cpu.get_cpu_capability(), onednn_isa()
    bits = measured_width(aten, onednn)
    return {
        "cpu": model or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "vector_width": vector_width(flags),
        # What torch's own kernels dispatch to (ATEN_CPU_CAPABILITY lowers it; oneDNN follows
        # ONEDNN_MAX_CPU_ISA): a benchmark run under either measures that width, at its peak.
        "aten_capability": aten,
        "onednn_isa": onednn or "unknown",
        "measured_bits": bits,
        "fma_peak_gflops": peaks.get(bits, fma_peak()) if bits else fma_peak(),
        "fma_peak_by_bits": peaks,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def describe(m: dict | None = None) -> str:
    m = m or machine()
    bits = m["measured_bits"]
    peak = (
        f"fp32 FMA peak at {bits}-bit {m['fma_peak_gflops']:.0f} GFLOP/s per core "
        f"({', '.join(f'{b}-bit {r:.0f}' for b, r in m['fma_peak_by_bits'].items())}; benchmarks/fma_peak.c)"
        if m["fma_peak_gflops"]
        else "FMA peak not measured (no C compiler)"
    )
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, {m['vector_width']}; measured at {bits}-bit vectors "
        f"(torch kernels {m['aten_capability']}, oneDNN {m['onednn_isa']}); {peak}; torch {m['torch']}; "
        f"load average {m['load_average_at_start'][0]:.2f}"
    )


if __name__ == "__main__":
    print(describe())


def watch_tree(proc: subprocess.Popen, every: float = 0.1, pss: bool = False):
    """Sample ``proc`` and its descendants until it exits, on a thread (returned with its figures):
    the peak summed RSS (and PSS, which counts shared pages once, when asked: dearer to read), the
    peak number of processes, and each process's CPU seconds."""
    import threading
    import time

    import psutil

    peak: dict = {"pss": 0, "rss": 0, "procs": 0, "cpu": {}}

    def sample():
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                mems = [p.memory_full_info() if pss else p.memory_info() for p in tree]
                if pss:
                    peak["pss"] = max(peak["pss"], sum(m.pss for m in mems))
                peak["rss"] = max(peak["rss"], sum(m.rss for m in mems))
                peak["procs"] = max(peak["procs"], len(tree))
                for p in tree:
                    t = p.cpu_times()
                    peak["cpu"][p.pid] = t.user + t.system
            except psutil.Error:
                pass
            time.sleep(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread, peak
