"""A submitted method that hunts for the test labels finds nothing, and cannot write outside its
work directory (issue: leaderboard isolation)."""

import json
import os
import uuid

import pytest

from metrics.sandbox import probe

from .helpers import TOP_LEVEL, run_cli

SNOOP = '''
import os
import sys

import numpy as np

ARCHIVE = {archive!r}
RESULTS = {results!r}
ESCAPE = {escape!r}  # a file in this machine's /tmp; the method's own /tmp is its work directory


def _is_archive(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == "modelset"
    except Exception:
        return False


class Snoop:
    """Tries every way to reach the private labels; embeds honestly only if all of them fail."""

    def __init__(self, seed=0):
        pass

    def embed(self, view):
        found = []
        for path in (ARCHIVE, RESULTS):
            if os.path.exists(path):
                found.append(f"can see {{path}}")
        text = " ".join(sys.argv) + " ".join(f"{{k}}={{v}}" for k, v in os.environ.items())
        if ARCHIVE in text or os.path.basename(ARCHIVE) in text:
            found.append("archive named in argv or environment")
        try:
            parent = open(f"/proc/{{os.getppid()}}/cmdline", "rb").read().decode(errors="replace")
            if "archive" in parent:
                found.append("parent command line")
        except OSError:
            pass
        if found:  # no need to search the disk
            raise RuntimeError("LEAK: " + "; ".join(found))
        archives = []
        for root, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
            archives += [os.path.join(root, f) for f in files if f.endswith(".h5") and f != "public.h5"
                         and _is_archive(os.path.join(root, f))]
            if archives:
                found.append(f"archives reachable: {{archives[:3]}}")
                break
        try:
            with open(os.path.join(RESULTS, "forged.json"), "w") as fh:
                fh.write("{{}}")
            found.append("wrote into the results directory")
        except OSError:
            pass
        try:
            with open(ESCAPE, "w") as fh:  # checked from outside: it must not land in the real /tmp
                fh.write("escaped")
        except OSError:
            pass
        import socket
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1)
            found.append("network")
        except OSError:
            pass
        if found:
            raise RuntimeError("LEAK: " + "; ".join(found))
        return view.params[:, :8]
'''


@pytest.mark.skipif(probe() is not None, reason=f"this machine cannot confine a method: {probe()}")
def test_a_snooping_method_finds_nothing_and_writes_nothing(small_archive, tmp_path):
    results = tmp_path / "results"
    escape = f"/tmp/modelset-escape-{uuid.uuid4().hex}"
    run_cli("leaderboard", "submit", "--archive", small_archive, "--method", "raw-cosine", "--results", results)
    before = {f.name: f.read_bytes() for f in results.glob("*.json")}
    method = tmp_path / "snoop.py"
    method.write_text(SNOOP.format(archive=str(small_archive.resolve()), results=str(results.resolve()), escape=escape))
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--method",
        f"{method}:Snoop",
        "--results",
        results,
        "--sandbox",
        "require",
    )
    assert r.returncode == 0, r.stderr  # the method raises "LEAK: ..." if any attempt succeeded
    assert not (results / "forged.json").exists() and not os.path.exists(escape)
    assert {f.name: f.read_bytes() for f in results.glob("*.json") if f.name in before} == before
    new = [f for f in results.glob("Snoop--*.json")]
    assert len(new) == 1 and json.loads(new[0].read_text())["method"] == "Snoop"


def test_without_the_sandbox_the_same_method_would_see_the_archive(small_archive, tmp_path):
    """The control: proves the snooping method's checks really detect a leak."""
    method = tmp_path / "snoop.py"
    method.write_text(
        SNOOP.format(archive=str(small_archive.resolve()), results=str(tmp_path / "r"), escape=str(tmp_path / "escape"))
    )
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--method",
        f"{method}:Snoop",
        "--results",
        tmp_path / "r",
        "--sandbox",
        "off",
        "--timeout",
        "120",
    )
    assert r.returncode == 2 and "LEAK:" in r.stderr and "can see" in r.stderr


def test_submitted_code_is_never_imported_by_the_scoring_process(small_archive, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    method = tmp_path / "top_level.py"
    method.write_text(TOP_LEVEL.format(marks=str(marks)))
    r = run_cli(
        "leaderboard",
        "submit",
        "--archive",
        small_archive,
        "--method",
        f"{method}:Mean",
        "--results",
        tmp_path / "results",
    )
    assert r.returncode == 0, r.stderr
    importers = [p.read_text() for p in marks.iterdir()]
    assert not any("leaderboard" in argv for argv in importers), importers
    result = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert result["method"] == "Mean" and result["seeds"] == [0] and result["learned"] is False
