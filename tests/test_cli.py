"""The command line: what users type, including every kind of bad input (one line, exit 2, nothing written)."""

import pytest

from .helpers import run_cli


def test_presets_lists_each_with_a_description():
    r = run_cli("presets")
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert r.returncode == 0 and {"digits500", "digits-families", "modelset500-cifar100"} <= set(lines)
    assert "50 three-class tasks" in lines["digits500"] and all(lines.values())


def test_info_and_verify(small_archive):
    r = run_cli("info", small_archive)
    assert r.returncode == 0, r.stderr
    assert "models 12  tasks 6" in r.stdout and "test accuracy: mean" in r.stdout and "MiB" in r.stdout
    r = run_cli("verify", small_archive)
    assert r.returncode == 0 and "OK" in r.stdout


def test_verify_exits_nonzero_on_a_corrupt_archive(small_archive, tmp_path):
    import h5py

    bad = tmp_path / "bad.h5"
    bad.write_bytes(small_archive.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["architectures/small_cnn/params"][0, 0] = 42.0
    r = run_cli("verify", bad)
    assert r.returncode == 1 and "model 0: parameter checksum mismatch" in r.stdout


def test_build_writes_where_asked_and_reports(tmp_path):
    out = tmp_path / "zoo.h5"
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        out,
        "--no-progress",
        *[a for s in ["seeds=1", "tasks.count=2", "epochs=1"] for a in ("--set", s)],
    )
    assert r.returncode == 0, r.stderr
    assert out.exists() and "2 models (2 trained now)" in r.stdout
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        out,
        "--no-progress",
        *[a for s in ["seeds=1", "tasks.count=2", "epochs=1"] for a in ("--set", s)],
    )
    assert "up to date" in r.stdout


BAD_BUILDS = [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "{toml}"], "malformed TOML"),
    (["--preset", "digits500", "--set", "seeds=0"], "seeds must be a count >= 1"),
    (["--preset", "digits500", "--set", "colour=red"], "unknown key 'colour'"),
    (["--preset", "digits500", "--set", "tasks.classes=[[0, 1, 11]]"], "class 11 is not in dataset 'digits'"),
    (["--preset", "digits500", "--jobs", "0"], "--jobs must be >= 1"),
    (["--preset", "digits500", "--jobs", "two"], "invalid int value"),
    (["--bogus"], "the following arguments are required: --preset"),
]


@pytest.mark.parametrize("args, message", BAD_BUILDS)
def test_bad_build_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    toml = tmp_path / "broken.toml"
    toml.write_text("name = [\n")
    out = tmp_path / "out" / "zoo.h5"
    r = run_cli("build", *[a.replace("{toml}", str(toml)) for a in args], "--out", out)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("modelset: error: ") and r.stderr.count("\n") == 1 and message in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["info", "verify"])
def test_unreadable_or_foreign_files_are_one_line_exit_2(tmp_path, command):
    import h5py

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    for path, message in [
        (tmp_path / "absent.h5", "no such archive"),
        (junk, "not a readable HDF5 file"),
        (foreign, "not a modelset archive"),
    ]:
        r = run_cli(command, path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
