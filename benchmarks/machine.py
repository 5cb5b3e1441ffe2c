"""The machine a benchmark ran on, measured in the same run: every benchmark prints this line
beside its figures, because the same build runs 2-4x apart on cores of different speed and vector
width (oneDNN picks other kernels with AVX2 alone than with AVX-512).

    python benchmarks/machine.py     # prints the line and the peak of each vector width
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
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
    return {
        "cpu": model or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "vector_width": vector_width(flags),
        # What torch's own kernels dispatch to (ATEN_CPU_CAPABILITY lowers it; oneDNN follows
        # ONEDNN_MAX_CPU_ISA): a benchmark run under either measures that width.
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "fma_peak_gflops": fma_peak(),
        "fma_peak_by_bits": peaks,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def describe(m: dict | None = None) -> str:
    m = m or machine()
    peak = (
        f"fp32 FMA peak {m['fma_peak_gflops']:.0f} GFLOP/s per core "
        f"({', '.join(f'{b}-bit {r:.0f}' for b, r in m['fma_peak_by_bits'].items())}; benchmarks/fma_peak.c)"
        if m["fma_peak_gflops"]
        else "FMA peak not measured (no C compiler)"
    )
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, {m['vector_width']} (torch kernels {m['aten_capability']}, "
        f"oneDNN {m['onednn_max_isa']}); {peak}; torch {m['torch']}; load average {m['load_average_at_start'][0]:.2f}"
    )


if __name__ == "__main__":
    print(describe())
