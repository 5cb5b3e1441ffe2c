"""Integrity checks against real corruption, and readers that stay safe while an archive is rebuilt."""

import subprocess
import time

import h5py
import numpy as np

import modelset
from modelset.schema import param_checksum
from modelset.verify import verify

from .helpers import SMALL, build_command, run_cli


def test_verify_detects_a_flipped_byte_on_disk(small_archive, tmp_path):
    bad = tmp_path / "flipped.h5"
    bad.write_bytes(small_archive.read_bytes())
    with h5py.File(bad, "r") as f:
        info = f["architectures/small_cnn/params"].id.get_chunk_info(0)
    data = bytearray(bad.read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0xFF  # inside the compressed parameter chunk
    bad.write_bytes(bytes(data))
    problems = verify(bad)
    assert problems and all("params" in p or "checksum" in p for p in problems), problems
    r = run_cli("verify", bad)
    assert r.returncode == 1


def test_verify_rejects_a_truncated_file(small_archive, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(small_archive.read_bytes()[: small_archive.stat().st_size // 2])
    r = run_cli("verify", cut)
    assert r.returncode == 2 and "not a readable HDF5 file" in r.stderr


def test_open_readers_never_see_a_half_written_archive(small_archive, tmp_path):
    path = tmp_path / "zoo.h5"
    path.write_bytes(small_archive.read_bytes())
    held = modelset.load(path)  # a notebook holding the archive open
    before = held.params().copy()
    old_hash = held.attrs["plan_hash"]
    cmd = build_command(path, SMALL + ["lr=0.01"])
    rebuild = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reads = 0
    while rebuild.poll() is None or reads == 0:
        with modelset.load(path) as ms:  # a fresh reader at any moment gets a whole archive
            m = ms.models
            row = ms.params([int(m.index[-1])])[0]
            assert param_checksum(row) == m["checksum"].iloc[-1]
        np.testing.assert_array_equal(held.params(), before)  # the open one keeps its snapshot
        reads += 1
        time.sleep(0.05)
    assert rebuild.returncode == 0, rebuild.stderr.read()
    with modelset.load(path) as ms:
        assert ms.attrs["plan_hash"] != old_hash and verify(path) == []
    assert held.attrs["plan_hash"] == old_hash
    held.close()
    assert reads > 3
