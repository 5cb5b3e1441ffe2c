"""Memory and process limits the kernel holds for one run: a memory and a pids cgroup of its own.

The scorer's watch sums resident memory every 0.1 s. It cannot see memory no process maps (a
memfd or a tmpfs file written and never mapped, pipe and socket buffers), and a burst of processes
can pass the limit between two polls. A memory cgroup charges every page the run's processes
cause, kernel memory included, and the kernel OOM-kills inside it past the limit; a pids cgroup
refuses a fork past the process limit, whatever the uid.

The scoring process makes the run's cgroups below its own (it must be root, or own a delegated
cgroup v2), and the runner joins them before it forks, so everything the method starts is inside.
It cannot move out: it sees no ``/sys``, may not mount one, runs as an unprivileged uid, and its
cgroup namespace makes its group the root. Where no cgroup can be made the watch alone holds
memory and ``RLIMIT_NPROC`` processes, as the result records (``Group.record``).
"""

from __future__ import annotations

import os
import secrets
import signal
import time

# Per controller and version: (the limit's file, the file counting OOM kills, the peak's file).
FILES = {
    ("memory", 1): ("memory.limit_in_bytes", "memory.oom_control", "memory.max_usage_in_bytes"),
    ("memory", 2): ("memory.max", "memory.events", "memory.peak"),
    ("pids", 1): ("pids.max", None, "pids.peak"),
    ("pids", 2): ("pids.max", None, "pids.peak"),
}


def _mounts() -> dict[str, str]:
    """{controller: mount point} of this process's cgroup hierarchies; "" is cgroup v2."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, kind = left.split(), right.split()
            if len(fields) < 5 or len(kind) < 3 or fields[3] != "/":  # a bound subtree: paths would not map
                continue
            if kind[0] == "cgroup2":
                out.setdefault("", fields[4])
            elif kind[0] == "cgroup":
                for option in kind[2].split(","):
                    out.setdefault(option, fields[4])
    return out


def _own() -> dict[str, str]:
    """{controller: this process's cgroup}; "" is cgroup v2."""
    out = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _count(path: str, key: str) -> int:
    """The value of ``key`` in a flat keyed cgroup file, 0 if absent."""
    try:
        with open(path) as fh:
            for line in fh:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def join(dirs, pid: int) -> None:
    """Move ``pid`` into each cgroup directory of ``dirs`` (before it forks: its children follow).
    Raises OSError."""
    for d in dirs:
        _write(os.path.join(d, "cgroup.procs"), str(pid))


class Group:
    """One run's cgroups: ``dirs`` {controller: (directory, version)}, empty where none could be made."""

    def __init__(self, dirs: dict[str, tuple[str, int]]):
        self.dirs = dirs

    @classmethod
    def make(cls, memory: int, processes: int) -> Group:
        """Memory and pids cgroups below this process's own, holding ``memory`` bytes and
        ``processes`` tasks (plus the runner's outer process), for each controller it may make."""
        name = f"modelset-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            mounts, own = _mounts(), _own()
        except (OSError, ValueError):  # no /proc, or a line this parser does not know
            return cls({})
        limits = {"memory": memory, "pids": processes + 1}
        made = cls._v2(mounts, own, name, limits) or {}
        for ctl in limits:
            if ctl not in made and ctl in mounts and ctl in own:
                d = os.path.join(mounts[ctl] + own[ctl].rstrip("/"), name)
                if cls._limit(d, ctl, 1, limits[ctl]):
                    made[ctl] = (d, 1)
        return cls(made)

    @staticmethod
    def _limit(d: str, ctl: str, version: int, value: int) -> bool:
        """Make ``d`` (if need be) and set its limit; False, and ``d`` removed, if this fails."""
        try:
            os.makedirs(d, exist_ok=True)
            _write(os.path.join(d, FILES[ctl, version][0]), str(value))
            if ctl == "memory":  # no swapping round the limit, where swap is accounted
                swap, text = ("memory.memsw.limit_in_bytes", str(value)) if version == 1 else ("memory.swap.max", "0")
                if os.path.exists(os.path.join(d, swap)):
                    _write(os.path.join(d, swap), text)
            return True
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass
            return False

    @classmethod
    def _v2(cls, mounts, own, name, limits) -> dict | None:
        """Both controllers in one cgroup v2 group, where they are delegated to this process's."""
        if "" not in mounts or "" not in own:
            return None
        base = mounts[""] + own[""].rstrip("/")
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as fh:
                enabled = fh.read().split()
        except OSError:
            return None
        if not all(ctl in enabled for ctl in limits):
            return None
        d = os.path.join(base, name)
        if all(cls._limit(d, ctl, 2, value) for ctl, value in limits.items()):
            return {ctl: (d, 2) for ctl in limits}
        cls({"memory": (d, 2)}).remove()
        return None

    def oom_kills(self) -> int:
        """Processes the kernel killed for passing the memory limit."""
        if "memory" not in self.dirs:
            return 0
        d, version = self.dirs["memory"]
        return _count(os.path.join(d, FILES["memory", version][1]), "oom_kill")

    def peak(self, ctl: str) -> int | None:
        if ctl not in self.dirs:
            return None
        d, version = self.dirs[ctl]
        try:
            with open(os.path.join(d, FILES[ctl, version][2])) as fh:
                return int(fh.read())
        except (OSError, ValueError):
            return None

    def pids(self) -> set[int]:
        found = set()
        for d in {d for d, _ in self.dirs.values()}:
            try:
                with open(os.path.join(d, "cgroup.procs")) as fh:
                    found.update(int(p) for p in fh.read().split())
            except (OSError, ValueError):
                pass
        return found

    def kill(self) -> None:
        """SIGKILL every process in the groups."""
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def remove(self, wait: float = 10) -> None:
        """Kill what is left and remove the groups (a group is removable once empty)."""
        end = time.monotonic() + wait
        for d in sorted({d for d, _ in self.dirs.values()}):
            while True:
                self.kill()
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    time.sleep(0.02)

    def record(self) -> dict:
        """What holds each limit, for the result."""
        memory, pids = self.dirs.get("memory"), self.dirs.get("pids")
        return {
            "memory": f"cgroup v{memory[1]}" if memory else "watch",
            "processes": f"cgroup v{pids[1]}" if pids else "rlimit",
        }
