"""SIGKILL at several points of a build, then the same command again: the archive is the one an
uninterrupted build writes, with no model missing or duplicated."""

import subprocess

import pytest

import modelset

from .helpers import (
    SMALL,
    assert_same_archive,
    build_command,
    kill_and_resume,
    run_cli,
    shard_files,
    start_build,
    wait_for_shards,
)


@pytest.mark.parametrize(
    "failpoint, trained_before",
    [
        ("train:3", 2),  # during training: the 3rd unit trained, its shard never written
        ("shard-write:2", 1),  # while writing a shard: written to its temporary name, not renamed
        ("merge:4", 6),  # while merging: the archive half-written under its temporary name
    ],
)
def test_killed_build_resumes_to_the_same_archive(small_archive, tmp_path, failpoint, trained_before):
    out = tmp_path / "zoo.h5"
    litter = []

    def look():  # what the kill left behind, before the resumed build clears it
        litter.extend([*tmp_path.glob(".*.tmp"), *tmp_path.glob(".*.shards/.*.tmp")])

    r = kill_and_resume(out, SMALL, failpoint=failpoint, after_kill=look)
    assert litter or failpoint.startswith("train")  # the kill really left a partial file behind
    assert f"{2 * trained_before} already trained" in r.resumed.stderr
    assert_same_archive(out, small_archive)
    with modelset.load(out) as ms:
        assert ms.models["id"].tolist() == list(range(12))  # none missing, none duplicated
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.shards"))


def test_a_second_build_of_the_same_archive_is_refused_while_one_runs(tmp_path):
    import fcntl

    out = tmp_path / "zoo.h5"
    with open(tmp_path / ".zoo.h5.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = run_cli(
            "build", "--preset", "digits500", "--out", out, "--jobs", "1", *[a for s in SMALL for a in ("--set", s)]
        )
    assert r.returncode == 2 and "another build is writing" in r.stderr and not out.exists()


def test_a_dead_worker_is_one_line_and_the_build_resumes(small_archive, tmp_path):
    """A worker process killed mid-build (by the OOM killer, say): exit 2 with one line saying so,
    the shards trained so far kept, and the same command again finishes the same archive."""
    out = tmp_path / "zoo.h5"
    died = start_build(out, SMALL, jobs=2, failpoint="unit:2")  # each worker dies at its 2nd unit
    _, stderr = died.communicate(timeout=600)
    assert died.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("modelset: error: a build worker process died (exit code SIGKILL(-9)"), stderr
    assert "run the same command again to resume" in last and "Traceback" not in stderr
    assert not out.exists()
    kept = len(shard_files(out))
    resumed = subprocess.run(build_command(out, SMALL, jobs=2), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{2 * kept} already trained" in resumed.stderr
    assert_same_archive(out, small_archive)


def test_ctrl_c_stops_every_worker_and_the_same_command_resumes(tmp_path):
    """SIGINT to the build's process group, as a terminal's Ctrl-C sends it to the build and its
    workers: one line, exit 130, no worker left, trained shards kept for the same command."""
    import os
    import signal

    import psutil

    from modelset.verify import verify

    out, sets = tmp_path / "zoo.h5", ["seeds=2", "tasks.count=6", "epochs=30", "unit_size=2"]
    proc = start_build(out, sets, jobs=2, new_session=True)
    wait_for_shards(proc, out, 1)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers and proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "modelset: interrupted; run the same command again to resume"
    assert "Traceback" not in stderr and not out.exists()
    _, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()
    assert not alive
    kept = len(shard_files(out))
    assert 1 <= kept < 6
    resumed = subprocess.run(build_command(out, sets, jobs=2), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{2 * kept} already trained" in resumed.stderr and verify(out) == []
