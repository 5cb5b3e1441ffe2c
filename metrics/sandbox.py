"""Confine a submitted method: after this, the process sees only read-only code (Python, its
packages, modelset) and its own work directory — no archive, no results, no dataset, no network.

Linux user + mount + network namespaces and a chroot, set up with plain syscalls, so no root and
no extra tool are needed; only unprivileged user namespaces, which most distributions enable.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
import sysconfig
import tempfile

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/dev/null", "/dev/urandom")


class SandboxError(OSError):
    pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def code_dirs(extra=()) -> list[str]:
    """What a method may read: the interpreter, installed packages, modelset's own packages.

    Found without importing them: unshare(CLONE_NEWUSER) refuses a process that already runs
    threads, and numpy or torch start thread pools on import.
    """
    from importlib.util import find_spec

    packages = [next(iter(find_spec(p).submodule_search_locations)) for p in ("modelset", "metrics")]
    dirs = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
            *packages, *extra}
    return sorted(d for d in dirs if d and os.path.exists(d))


def dataset_dirs(extra=()) -> list[str]:
    """Where datasets lie inside the directories a method may read: modelset's digits and
    scikit-learn's bundled datasets (the same digits among them), Debian's dataset packages
    (/usr/share/datasets), and ``extra`` (the scoring side's data directory). A method gets real
    inputs only as a functional submission's probe batch, so these are hidden from every method."""
    from importlib.util import find_spec

    dirs = ["/usr/share/datasets", *extra]
    for package, sub in (("modelset", "data"), ("sklearn", "datasets/data")):
        spec = find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs.append(os.path.join(next(iter(spec.submodule_search_locations)), sub))
    # a symlinked directory shows under its real path too
    return sorted({p for d in dirs if os.path.isdir(d) for p in (os.path.abspath(d), os.path.realpath(d))})


def _hide(libc, path, root):
    """An empty read-only tmpfs over ``path`` inside the new root."""
    _check(libc.mount(b"tmpfs", (root + path).encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=4k"),
           f"hide {path}")


def _within(path, top) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _hide_datasets(libc, root, datasets, bound, workdir) -> None:
    """Hide each dataset directory that lies inside a bound one (only those are in the new root),
    once: one inside another hidden one (a data directory under /usr/share/datasets) is gone with it."""
    hidden = []
    for path in sorted(datasets):  # parents before their subdirectories
        if not any(_within(path, b) for b in bound) or any(_within(path, h) for h in hidden):
            continue
        covered = [b for b in [*bound, workdir] if _within(b, path)]
        if covered:
            raise SandboxError(errno.EINVAL, f"cannot hide the data directory {path}: it holds {covered[0]}, which "
                                             f"the method needs; keep datasets in a directory of their own")
        _hide(libc, path, root)
        hidden.append(path)


def _bind(libc, src, root, readonly):
    dst = root + src
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _check(libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"bind {src}")
    if readonly:  # a read-only remount must keep the flags the original mount locks
        locked = os.statvfs(src).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _check(libc.mount(None, dst.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked, None),
               f"read-only {src}")


def enter(workdir: str, root: str, readable=(), hidden=()) -> None:
    """Confine this process to ``workdir`` (read-write) plus read-only code directories, with every
    dataset directory (``dataset_dirs(hidden)``) hidden.

    ``root`` is an empty directory outside ``workdir`` that becomes the read-only ``/``.
    """
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    root = os.path.abspath(root)
    _check(libc.mount(root.encode(), root.encode(), None, MS_BIND, None), "bind the new root")
    bound = [*SYSTEM_DIRS, *code_dirs(readable)]
    for src in bound:
        if os.path.exists(src) and not os.path.islink(src):
            _bind(libc, src, root, readonly=True)
        elif os.path.islink(src):  # e.g. /lib -> usr/lib on merged-/usr systems
            os.makedirs(os.path.dirname(root + src), exist_ok=True)
            os.symlink(os.readlink(src), root + src)
    workdir = os.path.abspath(workdir)
    _hide_datasets(libc, root, dataset_dirs(hidden), bound, workdir)
    _bind(libc, workdir, root, readonly=False)
    # The root itself read-only too: nothing written outside the work directory survives.
    locked = os.statvfs(root).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _check(libc.mount(None, root.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked, None), "read-only /")
    os.chroot(root)
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir)
    tempfile.tempdir = workdir
