"""A hostile method, one hole at a time: it cannot leave its root, reach a process outside, outlive
its run or exhaust the machine, and its outputs are read by header (metrics.sandbox, metrics.outputs).

Each adversary raises "LEAK: ..." when its attack works, so a run that exits 0 shows that the attack
failed; each control runs the same adversary unconfined and shows that its check sees the attack.
"""

import json
import os
import subprocess
import sys
import time
import uuid
import zipfile

import numpy as np
import pytest

from metrics.outputs import OutputError, read_npz
from metrics.sandbox import probe

from .helpers import run_cli

_why = probe()
needs_sandbox = pytest.mark.skipif(_why is not None, reason=f"this machine cannot confine a method: {_why}")

HOSTILE = '''
import ctypes
import os
import signal
import subprocess
import sys
import time

import numpy as np

ARCHIVE = {archive!r}
SCORER = {scorer!r}  # the pid of the test process, which started the scorer
MARKER = {marker!r}
libc = ctypes.CDLL(None, use_errno=True)


class _Base:
    def __init__(self, seed=0):
        pass

    def embed(self, view):
        self.attack()
        return view.params[:, :8]


def _leak(found):
    if found:
        raise RuntimeError("LEAK: " + "; ".join(found))


class ChrootEscape(_Base):
    """chroot into a subdirectory, walk .. past the old root, chroot there."""

    def attack(self):
        found = []
        try:
            os.makedirs("jail", exist_ok=True)
            os.chroot("jail")
            for _ in range(64):
                os.chdir("..")
            os.chroot(".")
        except OSError as e:
            print("chroot refused:", e, file=sys.stderr)
        if os.path.exists(ARCHIVE):
            found.append("the private archive is reachable")
        _leak(found)


class Mounts(_Base):
    """mount a fresh proc, bind the root somewhere writable, unshare or clone a new user namespace,
    add a key, ptrace a child."""

    def attack(self):
        found = []
        os.makedirs("p", exist_ok=True)
        if libc.mount(b"proc", b"p", b"proc", 0, None) == 0:
            found.append("mounted proc")
        if libc.mount(b"/", b"p", None, 4096 | 16384, None) == 0:
            found.append("bind-mounted /")
        pid = os.fork()  # unshare wants a single-threaded process: a fresh child is one
        if pid == 0:
            os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
        if os.waitpid(pid, 0)[1] == 0:
            found.append("unshared a user namespace")
        clone = {{"x86_64": 56, "aarch64": 220}}[os.uname().machine]
        pid = libc.syscall(clone, 0x10000000 | signal.SIGCHLD, 0, 0, 0, 0)  # clone(CLONE_NEWUSER): a fork
        if pid == 0:
            os._exit(0)
        if pid > 0 and os.waitpid(pid, 0):
            found.append("cloned into a user namespace")
        add_key = {{"x86_64": 248, "aarch64": 217}}[os.uname().machine]
        if libc.syscall(add_key, b"user", b"modelset", b"x", 1, -2) > 0:  # into the process keyring
            found.append("added a key")
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        if libc.syscall(101, 16, child, 0, 0) == 0:  # ptrace(PTRACE_ATTACH, child)
            found.append("ptrace")
        os.kill(child, signal.SIGKILL)
        _leak(found)


class Signals(_Base):
    """Signal the scorer, its parent, or any process but its own; read other processes' /proc."""

    def attack(self):
        found = []
        for pid in (SCORER, os.getppid()):
            if pid > 1:
                try:
                    os.kill(pid, 0)
                    found.append(f"can signal pid {{pid}}")
                except OSError:
                    pass
        own = {{os.getpid()}}
        others = [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) not in own]
        for pid in others:
            try:
                cmd = open(f"/proc/{{pid}}/cmdline", "rb").read()
            except OSError:
                continue
            if b"leaderboard" in cmd or b"pytest" in cmd:
                found.append(f"read the command line of pid {{pid}}")
                break
        _leak(found)


class Priority(_Base):
    """Take a real-time policy or a raised priority, as the scorer may be allowed to (then give it back)."""

    def attack(self):
        found = []
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            found.append("real-time scheduling")
        except OSError:
            pass
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -5)
            os.setpriority(os.PRIO_PROCESS, 0, 0)
            found.append("raised its priority")
        except OSError:
            pass
        _leak(found)


class Daemon(_Base):
    """Leave a setsid, double-forked process behind that would outlive the run."""

    def attack(self):
        subprocess.Popen([sys.executable, "-c", f"import os, time\\nif os.fork() == 0:\\n    time.sleep(300)  # {{MARKER}}"],
                         start_new_session=True)
        time.sleep(1)


class DaemonTimeout(Daemon):
    def attack(self):
        super().attack()
        time.sleep(600)


class Stopped(_Base):
    """Stall past the time limit: a setsid child that ignores SIGTERM and stops itself; then stop
    its own process group and sleep."""

    def attack(self):
        code = f"import os, signal\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nos.kill(os.getpid(), signal.SIGSTOP)  # {{MARKER}}"
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.kill(0, signal.SIGSTOP)
        time.sleep(600)


class MemoryHog(_Base):
    def attack(self):
        held = []
        for _ in range(256):
            held.append(np.ones(64 << 20, np.uint8))  # 64 MiB at a time, touched
            time.sleep(0.01)


class ForkHog(_Base):
    """Two processes that each hold memory under the limit, but not together."""

    def attack(self):
        child = os.fork()
        held = [np.ones(1100 << 20, np.uint8)]
        time.sleep(5)
        if child == 0:
            os._exit(0)


class SharedPages(_Base):
    """Honest: three forked workers that share the parent's 600 MiB, copy-on-write, and touch none."""

    def attack(self):
        held = np.ones(600 << 20, np.uint8)
        workers = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                time.sleep(2)
                os._exit(0)
            workers.append(pid)
        for pid in workers:
            os.waitpid(pid, 0)
        del held


class MemfdHog(_Base):
    """Memory no process maps: memfd files written, never mapped, held open (in no process's RSS)."""

    def attack(self):
        held = []
        block = bytes(1 << 20)
        for i in range(3):
            fd = os.memfd_create(f"hog{{i}}")
            for _ in range(200):
                os.write(fd, block)
            held.append(fd)
        time.sleep(1)


class SocketHog(_Base):
    """Kernel memory: socket buffers filled and left unread (in no process's RSS)."""

    def attack(self):
        import socket

        held = []
        for _ in range(3000):
            a, b = socket.socketpair()
            a.setblocking(False)
            try:
                while True:
                    a.send(bytes(65536))
            except BlockingIOError:
                pass
            held.append((a, b))
        time.sleep(1)


class DiskFiller(_Base):
    def attack(self):
        block = os.urandom(1 << 20)
        with open("filler", "wb") as fh:
            for _ in range(1 << 14):
                fh.write(block)
                fh.flush()


class ForkBomb(_Base):
    def attack(self):
        for _ in range(100000):
            if os.fork() == 0:
                time.sleep(300)
                os._exit(0)


class CpuBurner(_Base):
    def attack(self):
        while True:
            pass


class HugeHeader(_Base):
    """An output whose header promises more than the machine holds, in a small file."""

    def attack(self):
        import io
        import zipfile

        real = np.savez

        def savez(fh, **arrays):
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
                for name in arrays:
                    with z.open(name + ".npy", "w", force_zip64=True) as member:
                        header = io.BytesIO()
                        np.lib.format.write_array_header_2_0(
                            header, {{"descr": "<f8", "fortran_order": False, "shape": (1 << 20, 1 << 20)}})
                        member.write(header.getvalue())
                        zero = bytes(1 << 20)
                        for _ in range(64):
                            member.write(zero)

        np.savez = savez
'''


@pytest.fixture
def hostile(tmp_path, small_archive):
    """(submit(cls, *flags) -> CompletedProcess, marker): the hostile module, one class per hole."""
    marker = f"modelset-daemon-{uuid.uuid4().hex}"
    method = tmp_path / "hostile.py"
    method.write_text(HOSTILE.format(archive=str(small_archive.resolve()), scorer=os.getpid(), marker=marker))

    def submit(cls, *flags, timeout="300"):
        return run_cli(
            "leaderboard",
            "submit",
            "--archive",
            small_archive,
            "--method",
            f"{method}:{cls}",
            "--results",
            tmp_path / "results",
            "--timeout",
            timeout,
            *flags,
        )

    return submit, marker


def _alive(marker) -> list[int]:
    """Processes on this machine whose command line holds ``marker``."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and marker.encode() in open(f"/proc/{d}/cmdline", "rb").read():
                pids.append(int(d))
        except OSError:
            pass
    return pids


def _confined_ok(r, results):
    assert r.returncode == 0, r.stderr  # the adversary raises "LEAK: ..." if its attack worked
    result = json.loads(next(results.glob("*.json")).read_text())
    assert result["confined"] is True and result["sandbox"]["engine"] == "namespaces", result["sandbox"]
    return result


def _rejected(r, *phrases):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    for p in phrases:
        assert p in lines[0], lines[0]


# -- no way out of the root -------------------------------------------------------------------------
@needs_sandbox
def test_a_chroot_escape_leads_nowhere(hostile, tmp_path):
    submit, _ = hostile
    _confined_ok(submit("ChrootEscape", "--sandbox", "require"), tmp_path / "results")


def test_control_unconfined_the_escape_check_sees_the_archive(hostile):
    submit, _ = hostile
    r = submit("ChrootEscape", "--sandbox", "off")
    assert r.returncode == 2 and "LEAK: the private archive is reachable" in r.stderr, r.stderr


@needs_sandbox
def test_mount_unshare_and_ptrace_are_refused(hostile, tmp_path):
    submit, _ = hostile
    result = _confined_ok(submit("Mounts", "--sandbox", "require"), tmp_path / "results")
    assert result["sandbox"]["seccomp"] is True


@pytest.mark.skipif(
    subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode != 0,
    reason="needs unprivileged user namespaces for a harmless control",
)
def test_control_in_a_plain_user_namespace_the_same_attacks_work(hostile, tmp_path):
    """Unconfined but in a throwaway user and mount namespace, where a mount changes nothing real."""
    code = "import sys; sys.path.insert(0, '.'); import hostile; hostile.Mounts().attack()"
    r = subprocess.run(["unshare", "-Urm", sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert "LEAK:" in r.stderr and all(
        attack in r.stderr
        for attack in (
            "bind-mounted /",
            "unshared a user namespace",
            "cloned into a user namespace",
            "added a key",
            "ptrace",
        )
    ), r.stderr


INSIDE = """
import ctypes, errno, os, sys
from metrics.sandbox import enter, Limits
held = enter({root!r}, userns={userns}, limits=Limits(disk=8 << 20))
problems = []
if os.getpid() != 1: problems.append("not pid 1 of its own namespace")
if os.getcwd() != "/method": problems.append("not in /method")
if os.path.exists({outside!r}): problems.append("the outside file is visible")
try:
    os.chroot("/usr"); problems.append("chroot allowed")
except OSError: pass
if [d for d in os.listdir("/proc") if d.isdigit()] != ["1"]: problems.append("/proc shows other processes")
try:
    open("/usr/x", "w"); problems.append("/usr writable")
except OSError: pass
try:
    with open("/method/f", "wb") as fh: fh.write(bytes(16 << 20))
    problems.append("wrote past the disk limit")
except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EFBIG): problems.append(repr(e))
status = dict(l.split(":", 1) for l in open("/proc/self/status"))
caps = {{k: status[k].strip() for k in ("CapEff", "CapBnd", "NoNewPrivs")}}
if caps != {{"CapEff": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}}: problems.append(str(caps))
print("; ".join(problems) or "ok", held["uid"])
"""


@needs_sandbox
@pytest.mark.parametrize("userns", [True, False] if os.geteuid() == 0 else [True])
def test_both_set_ups_give_the_same_confinement(tmp_path, userns):
    """A user's run (a user namespace) and root's (its own uid) hold the same promises; as root both
    are tried."""
    outside = tmp_path / "outside"
    outside.write_text("secret")
    (tmp_path / "root").mkdir()
    code = INSIDE.format(root=str(tmp_path / "root"), userns=userns, outside=str(outside))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok "), r.stdout + r.stderr


OTHER_ABI = """
import ctypes, mmap
if {confined}:
    from metrics.sandbox import enter
    enter({root!r})
# unshare(CLONE_NEWUSER) by i386's number (310) through int 0x80: a filter of x86_64's numbers alone
# would let it pass, and a user namespace gives back every capability
code = bytes.fromhex("b836010000" "bb00000010" "cd80" "c3")
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
call = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
print("unshare returned", call(), flush=True)
"""


def _other_abi(tmp_path, confined):
    (tmp_path / "root").mkdir()
    code = OTHER_ABI.format(confined=confined, root=str(tmp_path / "root"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


needs_ia32 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is x86's")


@needs_sandbox
@needs_ia32
def test_a_call_by_another_abis_number_is_killed(tmp_path):
    r = _other_abi(tmp_path, confined=True)
    if r.returncode == 128 + 11:
        pytest.skip("this kernel runs no 32-bit calls (ia32 emulation off): nothing to filter")
    assert r.returncode == 128 + 31 and "unshare returned" not in r.stdout, (r.returncode, r.stdout, r.stderr)  # SIGSYS


@needs_ia32
def test_control_unconfined_the_other_abis_call_makes_a_user_namespace(tmp_path):
    r = _other_abi(tmp_path, confined=False)
    if r.returncode == -11:
        pytest.skip("this kernel runs no 32-bit calls (ia32 emulation off): nothing to filter")
    assert r.stdout.strip() == "unshare returned 0", (r.returncode, r.stdout, r.stderr)


# -- nothing outside touched --------------------------------------------------------------------------
@needs_sandbox
def test_the_method_sees_and_signals_only_its_own_processes(hostile, tmp_path):
    submit, _ = hostile
    result = _confined_ok(submit("Signals", "--sandbox", "require"), tmp_path / "results")
    assert result["sandbox"]["proc"] is True  # /proc was there to read, and showed nothing else


def test_control_unconfined_the_method_signals_the_scorer_and_reads_its_proc(hostile):
    submit, _ = hostile
    r = submit("Signals", "--sandbox", "off")
    assert r.returncode == 2 and f"can signal pid {os.getpid()}" in r.stderr and "read the command line" in r.stderr, (
        r.stderr
    )


def _run_cgroups() -> set[str]:
    """The run cgroups below this process's own (a scorer it starts makes its own below them)."""
    from metrics.cgroups import _mounts, _own

    mounts, own = _mounts(), _own()
    found = set()
    for ctl in ("memory", "pids", ""):
        if ctl in mounts and ctl in own:
            base = mounts[ctl] + own[ctl].rstrip("/")
            found |= {f"{base}/{d}" for d in os.listdir(base) if d.startswith("modelset-")}
    return found


@pytest.fixture
def scorer_may_use_real_time():
    """This process, and the scorer it starts, allowed real-time priority and nice -20 (as root may
    be, or a user by limits.conf)."""
    import resource

    old = {r: resource.getrlimit(r) for r in (resource.RLIMIT_RTPRIO, resource.RLIMIT_NICE)}
    try:
        for r in old:
            resource.setrlimit(r, (40 if r == resource.RLIMIT_NICE else 99,) * 2)
    except (ValueError, OSError):
        pytest.skip("needs the right to raise RLIMIT_RTPRIO and RLIMIT_NICE (root)")
    yield
    for r, v in old.items():
        resource.setrlimit(r, v)


@needs_sandbox
def test_no_real_time_scheduling_or_raised_priority_whatever_the_scorer_may(
    hostile, tmp_path, scorer_may_use_real_time
):
    submit, _ = hostile
    _confined_ok(submit("Priority", "--sandbox", "require"), tmp_path / "results")


def test_control_unconfined_the_method_takes_real_time_priority(hostile, scorer_may_use_real_time):
    submit, _ = hostile
    r = submit("Priority", "--sandbox", "off")
    assert r.returncode == 2 and "LEAK: real-time scheduling; raised its priority" in r.stderr, r.stderr


@needs_sandbox
@pytest.mark.parametrize("cls, timeout", [("Daemon", "300"), ("DaemonTimeout", "20"), ("Stopped", "10")])
def test_no_process_outlives_the_run(hostile, cls, timeout):
    """Nor any cgroup the run was given."""
    submit, marker = hostile
    before = _run_cgroups()
    r = submit(cls, "--sandbox", "require", timeout=timeout)
    assert (r.returncode == 0) if cls == "Daemon" else (f"time limit of {timeout} s" in r.stderr), r.stderr
    assert _alive(marker) == []
    assert _run_cgroups() == before


def test_control_the_survivor_check_sees_a_live_daemon():
    marker = f"modelset-daemon-{uuid.uuid4().hex}"
    p = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"], start_new_session=True)
    try:
        for _ in range(200):  # until the child has exec'd and shows its own command line
            if _alive(marker):
                break
            time.sleep(0.05)
        assert _alive(marker) == [p.pid]
    finally:
        p.kill()
        p.wait()


# -- every resource bounded -----------------------------------------------------------------------------
@needs_sandbox
def test_a_memory_hog_is_rejected_naming_the_limit(hostile, tmp_path):
    submit, _ = hostile
    _rejected(submit("MemoryHog", "--sandbox", "require", "--memory", "1G"), "memory limit of 1 GiB", "--memory")
    assert not (tmp_path / "results").exists()


@needs_sandbox
def test_memory_counts_all_the_methods_processes_together(hostile):
    submit, _ = hostile
    _rejected(submit("ForkHog", "--sandbox", "require", "--memory", "2G"), "memory limit of 2 GiB")


def _cgroups_here() -> bool:
    from metrics.cgroups import Group

    group = Group.make(1 << 30, 16)
    group.remove()
    return set(group.dirs) == {"memory", "pids"}


needs_cgroups = pytest.mark.skipif(
    not _cgroups_here(), reason="needs memory and pids cgroups it may make (root, or a delegated cgroup v2)"
)
UNMAPPED = [("MemfdHog", ()), ("SocketHog", ("--open-files", "8192"))]


@needs_sandbox
@needs_cgroups
@pytest.mark.parametrize("cls, flags", UNMAPPED)
def test_memory_no_process_maps_is_held_by_the_runs_cgroup(hostile, tmp_path, cls, flags):
    """memfd files and socket buffers lie outside every process's resident memory, where the
    scorer's watch looks; the run's memory cgroup charges them, kernel memory included."""
    submit, _ = hostile
    _rejected(submit(cls, "--sandbox", "require", "--memory", "512M", *flags), "memory limit of 512 MiB", "--memory")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("cls, flags", UNMAPPED)
def test_control_the_same_memory_is_not_resident_where_the_watch_looks(hostile, tmp_path, cls, flags):
    """Run bare, the attack holds 600 MiB or more while its resident memory, sampled as the watch
    samples it, stays far below 512 MiB."""
    from metrics.leaderboard import _resident

    code = (
        "import resource, sys; sys.path.insert(0, '.'); import hostile; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192)); hostile.{cls}().attack()"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    peak = 0
    while p.poll() is None:
        peak = max(peak, _resident([p.pid]))
        time.sleep(0.05)
    assert p.returncode == 0 and 0 < peak < 300 << 20, (p.returncode, peak)


@needs_sandbox
@needs_cgroups
def test_pages_forked_workers_share_count_once(hostile, tmp_path):
    """Summed resident memory counts them once per process (2.4 GiB here); the cgroup, once."""
    submit, _ = hostile
    result = _confined_ok(submit("SharedPages", "--sandbox", "require", "--memory", "1536M"), tmp_path / "results")
    assert result["sandbox"]["held_by"]["memory"].startswith("cgroup")


@needs_sandbox
@needs_cgroups
def test_the_result_says_what_held_memory_and_processes(hostile, tmp_path):
    submit, _ = hostile
    result = _confined_ok(submit("Signals", "--sandbox", "require"), tmp_path / "results")
    held = result["sandbox"]["held_by"]
    assert held["memory"] in ("cgroup v1", "cgroup v2") and held["processes"] in ("cgroup v1", "cgroup v2"), held


@needs_sandbox
def test_a_disk_filler_is_rejected_naming_the_limit(hostile):
    submit, _ = hostile
    _rejected(submit("DiskFiller", "--sandbox", "require", "--disk", "64M"), "disk limit of 64 MiB", "--disk")


@needs_sandbox
def test_a_fork_bomb_is_held_by_the_process_limit(hostile, tmp_path):
    submit, _ = hostile
    _rejected(submit("ForkBomb", "--sandbox", "require", "--processes", "48"), "processes limit of 48", "--processes")


@needs_sandbox
def test_cpu_time_is_bounded(hostile):
    submit, _ = hostile
    _rejected(submit("CpuBurner", "--sandbox", "require", "--cpu-time", "15"), "cpu limit of 15 s", "--cpu-time")


def test_a_bad_limit_is_refused_in_one_line(small_archive, tmp_path):
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--method",
        "raw-cosine",
        "--memory",
        "lots",
        "--results",
        tmp_path / "r",
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--memory" in r.stderr, r.stderr


# -- outputs read by header ---------------------------------------------------------------------------------
@needs_sandbox
def test_an_output_whose_header_promises_a_huge_array_is_refused_unread(hostile):
    submit, _ = hostile
    _rejected(submit("HugeHeader", "--sandbox", "require"), "method outputs rejected", "more than an array of shape")


def _npz(path, arrays: dict, header_shape=None):
    """An .npz of ``arrays``; ``header_shape`` forges the first member's header."""
    import io

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i, (name, a) in enumerate(arrays.items()):
            buf = io.BytesIO()
            if i == 0 and header_shape is not None:
                np.lib.format.write_array_header_1_0(
                    buf, {"descr": a.dtype.str, "fortran_order": False, "shape": header_shape}
                )
                buf.write(a.tobytes())
            else:
                np.lib.format.write_array(buf, a)
            z.writestr(name + ".npy", buf.getvalue())
    return path


@pytest.mark.parametrize(
    "arrays, header_shape, message",
    [
        ({"x": np.zeros((4, 3))}, None, "shape (4, 3), expected (5, <= 16384)"),
        ({"x": np.zeros((5, 3))}, (5, 10**9), "expected (5, <= 16384)"),
        ({"x": np.zeros((5, 3))}, (5, 4), "do not match its header"),
        ({"x": np.zeros((5, 3), dtype="c16")}, None, "not a plain number"),
        ({"x": np.array([["a"] * 3] * 5)}, None, "not a plain number"),
    ],
)
def test_read_npz_checks_every_header_before_loading(tmp_path, arrays, header_shape, message):
    path = _npz(tmp_path / "o.npz", arrays, header_shape)
    with pytest.raises(OutputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_npz(path, lambda name: (5, [16384]))


class _Planted:
    """Unpickling it writes a file: what a pickled object array in an output could run in the scorer."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    "members, message",
    [
        ([("x.npy", "pickle")], "not a plain number"),
        ([("x.npy", "valid"), ("x.pkl", "valid")], "'x.pkl' is not an .npy array"),
        ([("x.npy", "valid"), ("y.npy", "valid")], "unexpected array 'y'"),
        ([("x.npy", "valid"), ("x.npy", "huge")], "expected (5, <= 16384)"),  # one name twice
        ([("x.npy", "huge"), ("x.npy", "valid")], "expected (5, <= 16384)"),
    ],
)
def test_read_npz_refuses_pickles_and_members_that_are_not_the_arrays_asked_for(tmp_path, members, message):
    """Written by the method's own code: a pickled object array (never unpickled; control: loaded
    with pickles allowed it runs), a member that is not an array, one not asked for, one name twice."""
    import io
    import warnings

    planted = tmp_path / "planted"
    path = tmp_path / "o.npz"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
        for name, what in members:
            buf = io.BytesIO()
            if what == "pickle":
                a = np.empty((5, 3), dtype=object)
                a[:] = _Planted(str(planted))
                np.lib.format.write_array(buf, a, allow_pickle=True)
            else:
                shape = (10**6, 10**6) if what == "huge" else (5, 3)
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
                buf.write(bytes(120))
            z.writestr(name, buf.getvalue())

    def expect(name):
        if name != "x":
            raise OutputError(f"unexpected array {name!r}")
        return (5, [16384])

    with pytest.raises(OutputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_npz(path, expect)
    assert not planted.exists()
    if members[0][1] == "pickle":  # the control
        np.load(path, allow_pickle=True)["x"]
        assert planted.exists()


def test_read_npz_loads_what_it_checked(tmp_path):
    a = np.arange(15.0).reshape(5, 3)
    assert np.array_equal(read_npz(_npz(tmp_path / "o.npz", {"x": a}), lambda name: (5, [16384]))["x"], a)


def test_embeddings_with_a_forged_header_are_refused_in_one_line(small_archive, tmp_path):
    import modelset
    from metrics.leaderboard import public_rng
    from metrics.public import make_public

    with modelset.load(small_archive) as ms:
        public, _ = make_public(ms, public_rng(ms))
    arrays = {s: np.zeros((len(test), 4)) for s, (train, test) in public.items()}
    path = _npz(tmp_path / "emb.npz", arrays, header_shape=(10**6, 10**6))
    r = run_cli("leaderboard", "submit", "--archive", small_archive, "--embeddings", path, "--results", tmp_path / "r")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--embeddings" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
