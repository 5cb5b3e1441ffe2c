"""The same build on dask.distributed: a LocalCluster of 2 worker processes on loopback.

Workers share no files with the client here beyond the installed package: results travel back
to the one writer, which alone writes shards and the archive.
"""

import os
import socket

import h5py
import pytest
import torch

from builders.build import build, shard_dir_for
from modelset.errors import ModelsetError
from modelset.preset import load_preset

from .helpers import MIXED, SMALL, archive_metadata, assert_same_archive, run_cli, start_build, wait_for_shards

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as lc:
        yield lc


def test_scheduler_build_is_bit_identical_to_the_local_build(small_archive, cluster, tmp_path):
    out = tmp_path / "dask.h5"
    report = build(load_preset("digits500", SMALL), out, scheduler=cluster.scheduler_address, progress=False)
    assert report["trained"] == 12
    assert_same_archive(small_archive, out)


def test_mixed_family_zoo_on_the_cluster_is_bit_identical(cluster, tmp_path):
    """STR, DGConv and ACDC units too: effective weights and each family's own parameters (their
    checksums are columns of /models)."""
    preset = load_preset("digits-families", MIXED)
    build(preset, tmp_path / "local.h5", jobs=1, progress=False)
    build(preset, tmp_path / "dask.h5", scheduler=cluster.scheduler_address, progress=False)
    assert_same_archive(tmp_path / "local.h5", tmp_path / "dask.h5")
    assert (
        len(set(archive_metadata(tmp_path / "dask.h5")[1]["family_checksum"])) == 24 + 1
    )  # 24 non-dense, "" for dense


def test_dask_workers_receive_the_data_directory(cluster, tmp_path, monkeypatch):
    """The workers' environment has no $MODELSET_DATA: the directory reaches them with each unit."""
    from modelset.datasets import DATA_ENV

    from .datafiles import write_mnist_family

    monkeypatch.delenv(DATA_ENV, raising=False)
    with distributed.Client(cluster.scheduler_address) as client:
        if any(client.run(os.getenv, DATA_ENV).values()):
            pytest.skip(f"the dask workers inherited ${DATA_ENV} from the shell that started the tests")
    write_mnist_family(tmp_path / "data", "FashionMNIST")
    preset = load_preset("fashion-mnist500", ["seeds=2", "tasks.count=2", "epochs=1", "unit_size=2"])
    build(preset, tmp_path / "local.h5", jobs=1, progress=False, data_root=tmp_path / "data")
    build(
        preset, tmp_path / "dask.h5", scheduler=cluster.scheduler_address, progress=False, data_root=tmp_path / "data"
    )
    assert_same_archive(tmp_path / "local.h5", tmp_path / "dask.h5")


def test_scheduler_build_trains_only_missing_units(small_archive, cluster, tmp_path):
    out = tmp_path / "resumed.h5"
    build(load_preset("digits500", SMALL), out, jobs=1, keep_shards=True, progress=False)
    shards = sorted(shard_dir_for(out).glob("unit-*.npz"))
    for s in shards[:4]:
        s.unlink()
    out.unlink()
    report = build(load_preset("digits500", SMALL), out, scheduler=cluster.scheduler_address, progress=False)
    assert report["trained"] == 8
    assert_same_archive(small_archive, out)


def test_cluster_local_from_the_command_line(small_archive, tmp_path):
    out = tmp_path / "local-cluster.h5"
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        out,
        "--cluster",
        "local",
        "--jobs",
        "2",
        *[a for s in SMALL for a in ("--set", s)],
    )
    assert r.returncode == 0, r.stderr
    assert "12 models (12 trained now)" in r.stdout
    assert "LocalCluster at tcp://127.0.0.1:" in r.stderr and "12/12" in r.stderr  # progress bar ran
    assert "Traceback" not in r.stderr
    assert_same_archive(small_archive, out)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", [lambda: f"tcp://127.0.0.1:{_closed_port()}", lambda: "not-an-address"])
def test_unreachable_scheduler_is_one_line_exit_2_nothing_written(tmp_path, address):
    out = tmp_path / "out" / "zoo.h5"
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        out,
        "--scheduler",
        address(),
        *[a for s in SMALL for a in ("--set", s)],
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("modelset: error: --scheduler ") and r.stderr.count("\n") == 1, r.stderr
    assert "cannot reach a dask scheduler" in r.stderr
    assert not (tmp_path / "out").exists()


def test_scheduler_and_cluster_together_are_rejected(tmp_path):
    r = run_cli(
        "build",
        "--preset",
        "digits500",
        "--out",
        tmp_path / "z.h5",
        "--cluster",
        "local",
        "--scheduler",
        "tcp://127.0.0.1:8786",
    )
    assert r.returncode == 2 and "not allowed with argument" in r.stderr and r.stderr.count("\n") == 1


def test_archive_from_the_cluster_verifies(cluster, tmp_path):
    out = tmp_path / "v.h5"
    build(
        load_preset("digits500", ["seeds=1", "tasks.count=2", "epochs=1"]),
        out,
        scheduler=cluster.scheduler_address,
        progress=False,
    )
    with h5py.File(out, "r") as f:
        assert f.attrs["n_models"] == 2
    r = run_cli("verify", out)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_is_checked_on_the_workers(cluster, tmp_path):
    out = tmp_path / "out" / "z.h5"
    with pytest.raises(ModelsetError, match="on the dask workers: --device cuda: torch sees no GPU"):
        build(load_preset("digits500", SMALL), out, scheduler=cluster.scheduler_address, device="cuda", progress=False)
    assert not (tmp_path / "out").exists()


def test_multithreaded_workers_are_refused(tmp_path):
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as lc:
        with pytest.raises(ModelsetError, match="runs 2 threads; start workers with one thread each"):
            build(load_preset("digits500", SMALL), tmp_path / "z.h5", scheduler=lc.scheduler_address, progress=False)
    assert not list(tmp_path.iterdir())


def test_local_workers_exit_when_the_build_is_killed(tmp_path):
    """The local executor's worker processes must not outlive a killed build, holding memory."""
    import signal

    import psutil

    out = tmp_path / "killed.h5"
    proc = start_build(out, ["seeds=2", "tasks.count=20", "epochs=10"], jobs=2)
    wait_for_shards(proc, out, 1)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers and proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()
    assert not alive
