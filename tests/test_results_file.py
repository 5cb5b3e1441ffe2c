"""benchmarks/results.py: each benchmark's figures land in one generated file, one section per
command and vector width; a run that fails leaves the file as it was."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import results  # noqa: E402


def test_sections_replace_their_own_and_keep_the_others(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    with results.recorded("bench_a", ["--x", "1"]):
        print("speed 1.0x")
    with results.recorded("bench_b", []):
        print("speed 2.0x")
    with results.recorded("bench_a", ["--x", "1"]):
        print("speed 3.0x")
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith(results.HEADER)
    assert "speed 3.0x" in text and "speed 1.0x" not in text and "speed 2.0x" in text
    assert len(results.sections(text)) == 2
    assert "`python benchmarks/bench_a.py --x 1`" in text and " UTC; torch kernels " in text
    assert "speed 3.0x" in capsys.readouterr().out  # the tee still prints


def test_a_failed_run_leaves_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    with results.recorded("bench_a", []):
        print("good")
    before = (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(RuntimeError), results.recorded("bench_a", []):
        print("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "RESULTS.md").read_text() == before
    assert sys.stdout is not None and not isinstance(sys.stdout, results._Tee)


def test_the_vector_width_keys_the_section(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    with results.recorded("bench_a", []):
        print("native")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with results.recorded("bench_a", []):
        print("avx2")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "native" in text and "avx2" in text and len(results.sections(text)) == 2


def test_a_benchmark_that_exits_with_success_is_recorded_and_a_failing_one_is_not(tmp_path, monkeypatch):
    """Benchmarks end with ``sys.exit(main())`` inside ``recorded``: exit status 0 is a finished run."""
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    with pytest.raises(SystemExit) as e, results.recorded("bench_a", []):
        print("finished")
        sys.exit(0)
    assert e.value.code == 0 and "finished" in (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(SystemExit), results.recorded("bench_a", []):
        print("failed")
        sys.exit(1)
    assert "failed" not in (tmp_path / "RESULTS.md").read_text()


def test_help_writes_no_section(tmp_path, monkeypatch):
    """argparse's --help exits with 0 too, before anything is measured: the file keeps what it had."""
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    with results.recorded("bench_a", []):
        print("measured")
    before = (tmp_path / "RESULTS.md").read_text()
    for flag in ("--help", "-h"):
        with pytest.raises(SystemExit) as e, results.recorded("bench_a", [flag]):
            print("usage: bench_a.py")
            sys.exit(0)
        assert e.value.code == 0
    assert (tmp_path / "RESULTS.md").read_text() == before
