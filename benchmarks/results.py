"""One generated file of every benchmark's figures: benchmarks/RESULTS.md, linked from the README.

A benchmark's figures are what it prints. ``recorded(name)`` runs the benchmark with its standard
output teed into a buffer and, when it finishes without error, replaces that benchmark's section of
RESULTS.md: the command, the date, the machine line (CPU, vector width and FMA peak measured in the
same run) and the output itself. Sections are keyed by the command and the vector width torch
dispatched to, so an AVX2 run (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``) sits beside the
native one instead of replacing it. Figures therefore live in one place, dated and with their machine;
docstrings keep only the reasoning.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Generated: each section is rewritten by the benchmark it names when that benchmark finishes "
    "(`benchmarks/results.py`). Edit the benchmarks, not this file. Compare ratios, not absolute "
    "times across machines: every section names its machine, its vector width and the FMA peak "
    "measured in the same run.\n"
)
_SECTION = re.compile(r"<!-- result: (?P<key>.+?) -->\n(?P<body>.*?)<!-- end -->\n", re.S)


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.buffer_ = stream, io.StringIO()

    def write(self, s):
        self.buffer_.write(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()


def sections(text: str) -> dict[str, str]:
    return {m["key"]: m["body"] for m in _SECTION.finditer(text)}


def render(entries: dict[str, str]) -> str:
    return HEADER + "".join(f"\n<!-- result: {k} -->\n{entries[k]}<!-- end -->\n" for k in sorted(entries))


def write_section(key: str, body: str, path: Path | None = None) -> None:
    """Replace (or add) one section; written to a temporary file and renamed, so a crash leaves the old file."""
    path = path or RESULTS
    entries = sections(path.read_text()) if path.exists() else {}
    entries[key] = body if body.endswith("\n") else body + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(entries))
    os.replace(tmp, path)


@contextmanager
def recorded(name: str, argv: list[str] | None = None):
    import torch

    args = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", f"benchmarks/{name}.py", *args])
    width = torch.backends.cpu.get_cpu_capability()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    key = f"{command} [{width}{', oneDNN ' + isa if isa else ''}]"
    tee, saved = _Tee(sys.stdout), sys.stdout
    sys.stdout = tee
    finished = None  # a benchmark's ``sys.exit(main())`` that says it succeeded
    try:
        yield
    except SystemExit as e:
        if e.code not in (0, None):
            raise
        finished = e
    finally:
        sys.stdout = saved
    # Only a run that finished gets here: an interrupted or failed one leaves the old section, and
    # argparse's --help, which also exits with 0, measured nothing.
    if {"-h", "--help"} & set(args):
        raise finished or SystemExit(0)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"## `{command}`\n\n{date}; torch kernels {width}\n\n```\n{tee.buffer_.getvalue().rstrip()}\n```\n"
    write_section(key, body)
    print(f"figures written to {RESULTS}")
    if finished is not None:
        raise finished
