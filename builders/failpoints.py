"""Crash-test hooks: ``MODELSET_FAILPOINT=name[:n]`` kills the build with SIGKILL the n-th time it
reaches ``failpoint(name)``, so tests can interrupt it exactly where they mean to."""

from __future__ import annotations

import collections
import os
import signal

_reached = collections.Counter()


def failpoint(name: str) -> None:
    spec = os.environ.get("MODELSET_FAILPOINT")
    if not spec:
        return
    target, _, n = spec.partition(":")
    if target == name:
        _reached[name] += 1
        if _reached[name] >= int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)
