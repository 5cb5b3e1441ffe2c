import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from builders.build import build, shard_dir_for
from modelset.preset import load_preset

from .helpers import SMALL, archive_params, assert_same_archive, kill_and_resume


def test_same_preset_is_bit_identical_whatever_jobs(small_archive, tmp_path):
    other = tmp_path / "jobs2.h5"
    build(load_preset("digits500", SMALL), other, jobs=2, progress=False)
    assert_same_archive(small_archive, other)


def test_up_to_date_archive_is_not_rebuilt(small_archive):
    before = os.stat(small_archive).st_mtime_ns
    report = build(load_preset("digits500", SMALL), small_archive, jobs=1, progress=False)
    assert report["status"] == "up to date" and os.stat(small_archive).st_mtime_ns == before


def test_changed_preset_rebuilds_and_reuses_no_stale_shard(small_archive, tmp_path):
    out = tmp_path / "a.h5"
    build(load_preset("digits500", SMALL), out, jobs=1, keep_shards=True, progress=False)
    assert len(list(shard_dir_for(out).glob("unit-*.npz"))) == 6
    report = build(load_preset("digits500", SMALL + ["lr=0.01"]), out, jobs=1, keep_shards=True, progress=False)
    assert report["trained"] == 12  # nothing reused from the old recipe
    assert not np.array_equal(archive_params(out)["small_cnn"], archive_params(small_archive)["small_cnn"])


def test_resume_after_sigkill_trains_only_the_missing_models(small_archive, tmp_path):
    out = tmp_path / "killed.h5"
    r = kill_and_resume(out, SMALL, after_shards=2)
    done = r.shards_at_kill
    assert 2 <= done < 6
    assert f"{2 * done} already trained, {12 - 2 * done} to train" in r.resumed.stderr
    assert_same_archive(out, small_archive)
    assert not shard_dir_for(out).exists() and not list(tmp_path.glob(".*.tmp"))


def test_failed_merge_leaves_no_partial_file(tmp_path, monkeypatch):
    import builders.build as b

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(b, "make_splits", boom)
    out = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        build(load_preset("digits500", ["seeds=1", "tasks.count=2", "epochs=1"]), out, jobs=1, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".x.h5.*.tmp"))
    assert shard_dir_for(out).exists()  # trained work is kept for the next run


# Ten 1 MiB blocks allocated, written and freed, round after round, in a fresh process: glibc's
# defaults hand the freed heap top back to the kernel each round, so every round faults its pages
# in again; after hold_freed_memory the process keeps them. Prints the faults of rounds 2 to 6.
_ROUNDS = """
import ctypes, resource, sys
from builders.build import hold_freed_memory
if sys.argv[1] == "hold":
    assert hold_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def one_round():
    blocks = [libc.malloc(1 << 20) for _ in range(10)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    for b in reversed(blocks):
        libc.free(b)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not (sys.platform == "linux" and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_build_workers_keep_the_memory_they_free():
    def faults(way):
        out = subprocess.run([sys.executable, "-c", _ROUNDS, way], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    pages = 5 * 10 * (1 << 20) // os.sysconf("SC_PAGE_SIZE")  # five rounds' worth, were every page refaulted
    assert faults("default") > pages // 2  # the control: glibc's defaults refault them
    assert faults("hold") < pages // 20
