"""Runs a submitted method in its own process: reads only the public file, writes only outputs.

    python -m metrics.runner PUBLIC.h5 SPEC SEEDS OUT_DIR SANDBOX [READABLE_DIR ...]

SEEDS is a comma-separated list, or empty for the method's default. The submitted code is imported
here only, never in the scoring process; ``meta.json`` tells that process the method's name, kind
and seeds.

SANDBOX is ``require`` (fail if the machine cannot confine the method), ``auto`` (confine when
possible, else warn) or ``off``. The sandbox's root is OUT_DIR's sibling ``root``. Exit 0 with one ``seed-<s>.npz`` per seed in OUT_DIR, or exit 3
with one line on stderr.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv=None) -> int:
    public_path, spec, seeds, out_dir, sandbox, *readable = argv or sys.argv[1:]
    # Enter the sandbox before importing numpy or torch: a threaded process cannot (see sandbox).
    if sandbox != "off":
        from . import sandbox as sb

        try:
            sb.enter(out_dir, str(Path(out_dir).parent / "root"), readable)
        except OSError as e:
            if sandbox == "require":
                print(f"SandboxError: cannot confine the method ({e}); enable unprivileged user namespaces "
                      f"or pass --sandbox off for a method you trust", file=sys.stderr)
                return 3
            print(f"warning: method runs unconfined ({e})", file=sys.stderr)
    import numpy as np

    from .evaluate import default_seeds, run_method
    from .methods import load_method
    from .public import read_public

    try:
        cls = load_method(spec)
        public = read_public(public_path)
        seeds = [int(s) for s in seeds.split(",")] if seeds else default_seeds(cls)
        for seed in seeds:
            outputs = run_method(cls, seed, public)
            flat = {f"{p}.{k}": np.asarray(v) for p, rep in outputs.items() for k, v in rep.items()}
            for k, v in flat.items():
                if v.dtype == object:
                    raise TypeError(f"{k} is not a numeric array")
            np.savez(Path(out_dir) / f"seed-{seed}.npz", **flat)
        meta = {"name": cls.__name__, "learned": bool(getattr(cls, "learned", False)),
                "functional": bool(getattr(cls, "functional", False)), "seeds": seeds}
        (Path(out_dir) / "meta.json").write_text(json.dumps(meta))
    except Exception as e:  # the parent reports it as the method's failure
        frame = traceback.extract_tb(e.__traceback__)[-1]
        print(f"{type(e).__name__}: {e} (at {Path(frame.filename).name}:{frame.lineno})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
