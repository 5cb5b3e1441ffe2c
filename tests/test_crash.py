"""SIGKILL at several points of a build, then the same command again: the archive is the one an
uninterrupted build writes, with no model missing or duplicated."""

import os
import signal
import subprocess
import sys

import pytest

import modelset

from .conftest import SMALL, archive_metadata, archive_params

CMD = ["build", "--preset", "digits500", "--jobs", "1", "--no-progress"] + [a for s in SMALL for a in ("--set", s)]


def _build(out, failpoint=None):
    env = {k: v for k, v in os.environ.items() if k != "MODELSET_FAILPOINT"}
    if failpoint:
        env["MODELSET_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "modelset.cli", *CMD, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
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
    killed = _build(out, failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    litter = list(tmp_path.glob(".*.tmp")) + list(tmp_path.glob(".*.shards/.*.tmp"))
    assert litter or failpoint.startswith("train")  # the kill really left a partial file behind

    resumed = _build(out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{2 * trained_before} already trained" in resumed.stderr
    assert archive_params(out)["small_cnn"].tobytes() == archive_params(small_archive)["small_cnn"].tobytes()
    assert archive_metadata(out) == archive_metadata(small_archive)
    ids = modelset.load(out).models["id"].tolist()
    assert ids == list(range(12))  # none missing, none duplicated
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.shards"))


def test_a_second_build_of_the_same_archive_is_refused_while_one_runs(tmp_path):
    import fcntl

    out = tmp_path / "zoo.h5"
    with open(tmp_path / ".zoo.h5.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = _build(out)
    assert r.returncode == 2 and "another build is writing" in r.stderr and not out.exists()
