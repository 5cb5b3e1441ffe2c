"""Runs a submitted method in its own process: reads only the public file, writes only its outputs.

    python -m metrics.runner CONFIG_JSON

CONFIG_JSON (written by ``leaderboard.run_isolated``) holds the method's spec, the seeds the scoring
process chose, the sandbox mode (``require``: fail if the machine cannot confine the method;
``auto``: confine when possible, else warn; ``off``), the sandbox's empty root, the files it shows
in the work directory, extra code directories it shows, extra data directories it hides, the
limits, the cgroups it joins first (``metrics.cgroups``), and two inherited file descriptors:
``status`` (one JSON line saying what holds, written and closed before the method's code loads)
and ``outputs`` (one .npz, ``seed-<s>/<split>.<field>`` per array, written when every seed has
run; the scorer asks for one seed per runner).

The submitted code is imported here only, never in the scoring process, and what it says of itself
(its name, kind or seeds) goes nowhere. Exit 0, or exit 3 with one line on stderr.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from pathlib import Path

from .cgroups import join
from .sandbox import Limits, describe

UNCONFINED = "warning: method runs unconfined"
# What each limit looks like from inside when it is reached.
_ERRNO_LIMIT = {
    errno.ENOSPC: "disk",
    errno.EFBIG: "disk",
    errno.EDQUOT: "disk",
    errno.EMFILE: "files",
    errno.ENFILE: "files",
}


def _limit_reached(e: BaseException) -> str | None:
    """The limit an exception (or one it was raised from) says was reached, if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or "can't allocate memory" in str(e):
            return "memory"
        if isinstance(e, OSError) and e.errno in _ERRNO_LIMIT:
            return _ERRNO_LIMIT[e.errno]
        if (isinstance(e, OSError) and e.errno == errno.EAGAIN) or "can't start new thread" in str(e):
            return "processes"
        e = e.__cause__ or e.__context__
    return None


def _confine(cfg: dict, limits: Limits) -> dict | None:
    """Enter the sandbox unless it is off: what holds, or None if the method runs unconfined."""
    if cfg["sandbox"] == "off":
        return None
    from . import sandbox as sb

    try:
        return sb.enter(cfg["root"], cfg["binds"], cfg["readable"], cfg["hidden"], limits)
    except OSError as e:
        if cfg["sandbox"] == "require":
            print(
                f"SandboxError: cannot confine the method ({e}); enable unprivileged user namespaces "
                f"or pass --sandbox off for a method you trust",
                file=sys.stderr,
            )
            sys.exit(3)
        print(f"{UNCONFINED} ({e})", file=sys.stderr)
        return None


def main(argv=None) -> int:
    cfg = json.loads((argv or sys.argv[1:])[0])
    limits = Limits(**cfg["limits"])
    try:  # before any fork, so that every process of the run is inside
        join(cfg["cgroups"], os.getpid())
    except OSError as e:
        print(f"SandboxError: cannot join the run's cgroup ({e})", file=sys.stderr)
        return 3
    # Enter the sandbox before importing numpy or torch: a threaded process cannot (see sandbox).
    held = _confine(cfg, limits)
    with os.fdopen(cfg["status"], "w") as status:  # closed before the method's code can reach it
        status.write(json.dumps(held) + "\n")
    try:
        import numpy as np

        from .evaluate import run_method
        from .methods import load_method
        from .public import read_public

        cls = load_method(cfg["spec"])
        public = read_public("public.h5")  # in the work directory, as the method's file if it sent one
        flat = {}
        for seed in cfg["seeds"]:
            outputs = run_method(cls, seed, public)
            for p, rep in outputs.items():
                for k, v in rep.items():
                    v = np.asarray(v)
                    if v.dtype == object:
                        raise TypeError(f"{p}.{k} is not a numeric array")
                    flat[f"seed-{seed}/{p}.{k}"] = v
        with os.fdopen(cfg["outputs"], "wb") as fh:
            np.savez(fh, **flat)
    except Exception as e:  # the parent reports it as the method's failure
        limit = _limit_reached(e)
        if limit is not None:
            print(f"LimitError: the method reached {describe(limit, getattr(limits, limit))}", file=sys.stderr)
            return 3
        frame = traceback.extract_tb(e.__traceback__)[-1]
        print(f"{type(e).__name__}: {e} (at {Path(frame.filename).name}:{frame.lineno})", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
