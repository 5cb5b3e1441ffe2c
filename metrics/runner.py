"""Runs a submitted method in its own process: reads only the public file, writes only outputs.

    python -m metrics.runner PUBLIC.h5 SPEC SEEDS WORK_DIR SANDBOX READABLE HIDDEN

SEEDS is the comma-separated list the scoring process chose. The submitted code is imported here
only, never in the scoring process, and what it says of itself (its name, kind or seeds) goes
nowhere: the only output is one ``outputs/seed-<s>.npz`` per seed, which the scoring process
checks against the seeds it asked for.

SANDBOX is ``require`` (fail if the machine cannot confine the method), ``auto`` (confine when
possible, else warn) or ``off``. The sandbox's root is WORK_DIR's sibling ``root``; READABLE lists
extra directories it shows (the submitted module's), HIDDEN extra data directories it hides, each
joined by os.pathsep. Exit 0, or exit 3 with one line on stderr.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

UNCONFINED = "warning: method runs unconfined"


def _paths(joined: str) -> list[str]:
    return [p for p in joined.split(os.pathsep) if p]


def main(argv=None) -> int:
    public_path, spec, seeds, work_dir, sandbox, readable, hidden = argv or sys.argv[1:]
    # Enter the sandbox before importing numpy or torch: a threaded process cannot (see sandbox).
    if sandbox != "off":
        from . import sandbox as sb

        try:
            sb.enter(work_dir, str(Path(work_dir).parent / "root"), _paths(readable), _paths(hidden))
        except OSError as e:
            if sandbox == "require":
                print(f"SandboxError: cannot confine the method ({e}); enable unprivileged user namespaces "
                      f"or pass --sandbox off for a method you trust", file=sys.stderr)
                return 3
            print(f"{UNCONFINED} ({e})", file=sys.stderr)
    import numpy as np

    from .evaluate import run_method
    from .methods import load_method
    from .public import read_public

    outputs_dir = Path(work_dir) / "outputs"
    try:
        cls = load_method(spec)
        public = read_public(public_path)
        for seed in (int(s) for s in seeds.split(",")):
            outputs = run_method(cls, seed, public)
            flat = {f"{p}.{k}": np.asarray(v) for p, rep in outputs.items() for k, v in rep.items()}
            for k, v in flat.items():
                if v.dtype == object:
                    raise TypeError(f"{k} is not a numeric array")
            np.savez(outputs_dir / f"seed-{seed}.npz", **flat)
    except Exception as e:  # the parent reports it as the method's failure
        frame = traceback.extract_tb(e.__traceback__)[-1]
        print(f"{type(e).__name__}: {e} (at {Path(frame.filename).name}:{frame.lineno})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
