"""The one way modelset writes a file that others read: archives, shards, leaderboard results.

    with atomic_file("data/x.h5") as tmp:
        write(tmp)

The content goes to a temporary file beside the target, is fsynced, then renamed over the target
(atomic on POSIX; an open reader keeps the old inode). A failure removes the temporary file and
leaves the target as it was, so a reader sees the old file or the whole new one, never a part.
Temporary names are ``.<target name>.<random>.tmp``, which a build sweeps up after a crash.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from .errors import ModelsetError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_file(path, before_replace=None):
    """Yield a temporary path beside ``path``; when the block ends normally, fsync it and rename it
    over ``path`` (``before_replace()`` runs just before the rename: crash tests hook in there)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelsetError(f"{path!r} is a directory; give a file path, e.g. {os.path.join(path, 'out')}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result is a normal file
        yield tmp
        _fsync(tmp)
        if before_replace is not None:
            before_replace()
        try:
            os.replace(tmp, path)
        except PermissionError:  # Windows refuses to replace a file another process has open
            raise ModelsetError(
                f"cannot replace {path}: another program has it open (Windows does not "
                f"allow replacing open files); close it and run again"
            ) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """``path`` holds ``text`` (UTF-8), replaced atomically."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
