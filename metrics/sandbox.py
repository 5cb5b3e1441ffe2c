"""Confine a submitted method: a root of its own, no privileges, its own processes, bounded resources.

After ``enter`` the process is pid 1 of a new PID namespace, in new mount, network, IPC and UTS
namespaces. Its ``/`` is a fresh tmpfs reached by ``pivot_root`` with the old root detached, so no
``..`` or second ``chroot`` leads anywhere; it holds only read-only code (Python, its packages,
modelset), an empty ``/proc`` of its own processes, a few device nodes, and its work directory
``/method``, a tmpfs of ``Limits.disk`` bytes. Every capability is dropped, ``no_new_privs`` is set,
and a seccomp filter refuses the calls that reshape namespaces or reach other processes (mount,
chroot, unshare, setns, namespace flags of clone, ptrace, keys, bpf). When pid 1 ends, the kernel
ends every process left in the namespace, whatever it forked or ``setsid``-ed.

Run by root, the namespaces are made with root's own privileges and the method then runs as an
unused uid of its own (``run_uid``), so the kernel's per-user process limit applies to it (it never
applies to root, even inside a user namespace). Run by a user, an unprivileged user namespace gives
the privileges to set up, and they are dropped the same way. bubblewrap was measured as the engine
and not kept: run by root it can only map the sandbox to uid 0, which the process limit exempts,
and its ``--ro-bind-fd`` fails once dropped to another uid.

Set up with plain syscalls before numpy or torch start threads (``unshare`` refuses a threaded
process), so no tool beyond Python is needed; pyseccomp (libseccomp) compiles the filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
import sysconfig
from dataclasses import asdict, dataclass

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1,
    2,
    4,
    8,
    32,
    4096,
    16384,
    1 << 18,
)
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
WORK = "/method"  # the method's work directory inside its root
# Refused with EPERM: what could reshape the sandbox or reach a process outside the method's own.
DENIED = (
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "sethostname",
    "setdomainname",
)


@dataclass(frozen=True)
class Limits:
    """What a method may use; each has a ``leaderboard submit`` option (``OPTIONS``)."""

    memory: int = 6 << 30  # bytes in all its processes: their cgroup (metrics.cgroups), else the watch
    disk: int = 1 << 30  # bytes in its work directory (a tmpfs), and the largest file it may write
    processes: int = 256  # processes and threads at once
    files: int = 1024  # open files per process
    cpu: int = 3600  # CPU seconds per process

    def record(self) -> dict:
        return asdict(self)


OPTIONS = {
    "memory": "--memory",
    "disk": "--disk",
    "processes": "--processes",
    "files": "--open-files",
    "cpu": "--cpu-time",
}
UNITS = {"memory": "bytes", "disk": "bytes", "processes": "", "files": "", "cpu": "s"}


def describe(limit: str, value: int) -> str:
    """One phrase naming a limit, its value and the option that raises it."""
    if UNITS[limit] == "bytes":
        shown = f"{value / 2**30:g} GiB" if value >= 2**30 else f"{value / 2**20:g} MiB"
    else:
        shown = f"{value:g}{' ' + UNITS[limit] if UNITS[limit] else ''}"
    return f"its {limit} limit of {shown}; pass {OPTIONS[limit]} to allow more"


def probe() -> str | None:
    """Why this machine cannot confine a method, or None if it can (a real sandbox, entered)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        code = (
            f"import sys; from metrics.sandbox import enter; enter({d!r}); import os; "
            f"sys.exit(0 if os.getpid() == 1 else 1)"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]


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

    Found without importing them: unshare refuses a process that already runs threads, and numpy
    or torch start thread pools on import.
    """
    from importlib.util import find_spec

    packages = [next(iter(find_spec(p).submodule_search_locations)) for p in ("modelset", "metrics")]
    paths = sysconfig.get_paths()
    dirs = {
        sys.prefix,
        sys.base_prefix,
        paths["stdlib"],
        paths["platstdlib"],
        paths["purelib"],
        paths["platlib"],
        os.path.dirname(os.path.realpath(sys.executable)),
        *packages,
        *extra,
    }
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


def _within(path, top) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _mount(libc, src, dst, fstype, flags, data, what):
    _check(
        libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags, data and data.encode()), what
    )


def _readonly(libc, dst, what):
    """Remount a bind read-only, keeping the flags its source mount locks (nosuid, nodev, noexec)."""
    locked = os.statvfs(dst).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(libc, None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | locked, None, what)


def _bind(libc, src, root, readonly, dst=None):
    dst = root + (dst or src)
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _mount(libc, src, dst, None, MS_BIND | MS_REC, None, f"bind {src}")
    if readonly:
        _readonly(libc, dst, f"read-only {src}")


def _hide_datasets(libc, root, datasets, bound) -> None:
    """An empty read-only tmpfs over each dataset directory that lies inside a bound one (only those
    are in the new root), once: one inside another hidden one is gone with it."""
    hidden = []
    for path in sorted(datasets):  # parents before their subdirectories
        if not any(_within(path, b) for b in bound) or any(_within(path, h) for h in hidden):
            continue
        covered = [b for b in bound if _within(b, path) and b != path]
        if covered:
            raise SandboxError(
                errno.EINVAL,
                f"cannot hide the data directory {path}: it holds {covered[0]}, which "
                f"the method needs; keep datasets in a directory of their own",
            )
        _mount(libc, "tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k", f"hide {path}")
        hidden.append(path)


def run_uid() -> int:
    """The uid (and gid) a method runs as when root starts it: unused by any account, one per run,
    so that the per-user process limit counts this run's processes alone."""
    return 0x7F000000 + os.getpid() % 0x00FFFFFF


def _drop_privileges(libc, uid: int | None) -> None:
    for cap in range(64):  # the bounding set, while CAP_SETPCAP is still held
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    if uid is not None:  # root's: a change of uid from 0 clears every capability
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:  # in our own user namespace: clear the effective, permitted and inheritable sets
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        _check(libc.capset(header, data), "drop capabilities")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")  # reset by setuid


def seccomp_filter():
    """The filter of ``DENIED`` calls, or None where libseccomp is missing."""
    try:
        import pyseccomp as sc  # finds libseccomp through ldconfig: build the filter before pivot_root
    except (ImportError, OSError, RuntimeError):
        return None
    f = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):  # a call this kernel or architecture lacks
            pass
    for flag in (CLONE_NEWUSER, *(1 << b for b in range(32) if (1 << b) & NAMESPACES)):
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags hide behind a pointer: libc falls back to clone
    return f


def enter(
    root: str, binds: dict | None = None, readable=(), hidden=(), limits: Limits = Limits(), userns: bool | None = None
) -> dict:
    """Confine this process (see the module's docstring); returns what holds, for the result.

    ``root``: an empty directory that becomes the new ``/``. ``binds``: files to show read-only in
    the work directory ({name: path outside}). ``readable``: extra code directories, read-only.
    ``hidden``: extra data directories, hidden. The calling process forks here: the parent stays
    outside, waits and exits with the method's status; the child returns, as pid 1 of the sandbox.
    ``userns``: set up in a user namespace (default: unless root), as a user's run is.
    """
    libc = _libc()
    as_root = os.geteuid() == 0 if userns is None else not userns
    uid, gid = os.getuid(), os.getgid()
    owner = run_uid() if as_root else 0  # found before the fork: inside, getpid() is 1
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
    seccomp = seccomp_filter()  # before unshare: finding libseccomp forks, and a first fork would be pid 1
    _check(libc.unshare(NAMESPACES | (0 if as_root else CLONE_NEWUSER)), "unshare")
    if not as_root:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
    pid = os.fork()  # the child is pid 1 of the new PID namespace
    if pid:
        _wait_and_exit(pid)
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None, "make mounts private")
    root = os.path.abspath(root)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755", "the new root")
    bound = []
    for src in sorted({d for d in [*SYSTEM_DIRS, *code_dirs(readable)] if os.path.lexists(d)}):
        if any(_within(src, b) for b in bound):
            continue  # already shown with a directory that holds it
        if os.path.islink(src):  # e.g. /lib -> usr/lib on merged-/usr systems
            os.makedirs(os.path.dirname(root + src), exist_ok=True)
            os.symlink(os.readlink(src), root + src)
        else:
            _bind(libc, src, root, readonly=True)
        bound.append(src)
    _hide_datasets(libc, root, dataset_dirs(hidden), bound)
    for dev in DEVICES:
        if os.path.exists(dev):
            _bind(libc, dev, root, readonly=False)
    os.makedirs(root + WORK)
    _mount(
        libc,
        "tmpfs",
        root + WORK,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={limits.disk},mode=0700,uid={owner},gid={owner}",
        "the work directory",
    )
    for name, src in (binds or {}).items():
        _bind(libc, src, root, readonly=True, dst=f"{WORK}/{name}")
    if not os.path.lexists(root + "/tmp"):  # (code bound from under /tmp made it a directory)
        os.symlink(WORK.lstrip("/"), root + "/tmp")
    os.makedirs(root + "/proc")
    proc = libc.mount(b"proc", (root + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0
    os.makedirs(root + "/.old")
    _check(libc.syscall(155 if _x86_64() else 41, root.encode(), (root + "/.old").encode()), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", MNT_DETACH), "detach the old root")
    os.rmdir("/.old")
    _mount(libc, None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None, "read-only /")
    _drop_privileges(libc, owner if as_root else None)
    if seccomp is not None:
        seccomp.load()
    set_limits(limits)
    os.chdir(WORK)
    os.environ.update(HOME=WORK, TMPDIR=WORK, MPLCONFIGDIR=WORK)
    return {
        "engine": "namespaces",
        "uid": "own unused uid" if as_root else "user namespace",
        "proc": proc,
        "seccomp": seccomp is not None,
        "limits": limits.record(),
    }


def _x86_64() -> bool:
    return os.uname().machine == "x86_64"


def _wait_and_exit(pid: int) -> None:
    """The parent half of ``enter``: exit as the sandbox's pid 1 did (128 + signal if killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(3)
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def set_limits(limits: Limits) -> None:
    """The kernel's limits, soft = hard so the method cannot raise them; memory is the scorer's
    (``metrics.cgroups``). No real-time scheduling and no raised priority, whatever the scorer was
    allowed: a real-time spinner starves every other process on its cores."""
    for res, value in (
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_NOFILE, limits.files),
        (resource.RLIMIT_FSIZE, limits.disk),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_RTPRIO, 0),
        (resource.RLIMIT_NICE, 0),
    ):
        resource.setrlimit(res, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu + 5))  # soft: SIGXCPU; hard: SIGKILL
