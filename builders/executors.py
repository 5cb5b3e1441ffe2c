"""Executors: where work units train. joblib's loky worker processes on this machine, or
dask.distributed.

Both hand each work unit to a trainer and give back its results, in completion order, to the one
process that writes shards and the archive: workers need no shared filesystem, only modelset
installed. What a unit trains to depends only on the unit (see ``build.train_unit``), never on
the executor.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from modelset.errors import ModelsetError

log = logging.getLogger("modelset.build")

# How long to wait for a dask scheduler before calling the address unreachable.
CONNECT_TIMEOUT = "10s"
# A loky worker left idle this long exits: the workers are gone by the time the archive is merged,
# instead of holding their memory for joblib's default 300 s.
IDLE_WORKER_TIMEOUT = 2
# loky warns when a worker times out just as new units arrive (builds back to back in one process);
# it starts another in its place, which is all there is to it.
warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given", category=UserWarning)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: exit once the build process is gone (even by kill -9), rather than
    block for ever writing a result nobody will read, holding its memory (loky's workers do not
    watch their parent)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class LocalExecutor:
    """``jobs`` trainers on this machine: joblib's loky worker processes, or this process alone.

    With ``jobs`` > 1 this process only hands out units and writes; it does not train beside the
    workers. joblib runs ``n_jobs=1`` in the calling thread, so one loky worker beside a training
    parent is not to be had, and a unit training in a second thread of this process would share its
    torch thread settings (see ``build.pinned_threads``). The cost is this process's memory, one
    torch import more than a pool whose parent trains (README, "Local workers", has the measurement).
    loky workers are spawned, not forked (torch's OpenMP state does not survive a fork)."""

    def __init__(self, jobs: int):
        self.jobs = (os.cpu_count() or 1) if jobs == -1 else jobs

    def map_unordered(self, fn: Callable, items: Iterable[tuple]) -> Iterator:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        items = list(items)
        if self.jobs == 1 or len(items) < 2:
            for args in items:
                yield fn(*args)
            return
        parallel = Parallel(
            n_jobs=min(self.jobs, len(items)),
            backend="loky",
            return_as="generator_unordered",
            batch_size=1,  # one unit per task: a result is a shard, saved as soon as it is back
            pre_dispatch="2 * n_jobs",  # two units in hand per worker, so none idles between units
            max_nbytes=None,  # units are small; nothing to memory-map
            idle_worker_timeout=IDLE_WORKER_TIMEOUT,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        results = parallel(delayed(fn)(*args) for args in items)
        try:
            # Not ``yield from``: that would close joblib's generator early, before the warnings filter below.
            for result in results:  # noqa: UP028
                yield result
        except TerminatedWorkerError as e:
            found = re.search(r"exit codes of the workers are \{([^}]*)\}", str(e))
            codes = found.group(1) if found else "unknown"
            raise ModelsetError(
                f"a build worker process died (exit code {codes}; out of memory?); the units trained so far "
                "are kept: run the same command again to resume, with fewer --jobs if memory is short"
            ) from None
        finally:  # a build stopped early (an error, Ctrl-C) stops the workers
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # joblib's warning of the units it cancels: meant so
                results.close()


def _single_threaded(fn, *args):
    """On a dask worker: pin torch to one thread for good (workers are single-threaded, see
    ``_check_workers``), rather than set and restore it around each unit."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


def _check_workers(client, scheduler: str) -> int:
    """The number of workers, after checking each runs one task at a time: two units training
    concurrently in one process are not reproducible bit for bit (a build with joblib threads
    was not; oneDNN's primitives are not meant to migrate between threads)."""
    workers = client.scheduler_info().get("workers", {})
    multi = sorted(addr for addr, w in workers.items() if w.get("nthreads", 1) != 1)
    if multi:
        raise ModelsetError(
            f"--scheduler {scheduler}: worker {multi[0]} runs {workers[multi[0]]['nthreads']} "
            "threads; start workers with one thread each (dask worker --nthreads 1) so that "
            "builds are reproducible"
        )
    return len(workers)


class DaskExecutor:
    def __init__(self, client):
        self.client = client

    def map_unordered(self, fn: Callable, items: Iterable[tuple]) -> Iterator:
        from distributed import as_completed

        # pure=False: a unit is never deduplicated against an earlier submission by key.
        futures = [self.client.submit(_single_threaded, fn, *args, pure=False) for args in items]
        try:
            for future in as_completed(futures):
                result = future.result()
                future.release()  # the worker may drop it as soon as it is here
                yield result
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def run_on_workers(self, fn: Callable) -> dict:
        return self.client.run(fn)


@contextmanager
def open_executor(jobs: int = 1, scheduler: str | None = None, cluster: str | None = None):
    """``jobs`` local processes (this one included); or a dask client of ``scheduler`` (an
    address), or of a LocalCluster of ``jobs`` single-threaded worker processes (``cluster="local"``)."""
    if scheduler is None and cluster is None:
        yield LocalExecutor(jobs)
        return
    if scheduler is not None and cluster is not None:
        raise ModelsetError("give either --scheduler ADDRESS or --cluster local, not both")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ModelsetError("dask.distributed is not installed; install modelset[cluster]") from None
    # distributed logs every worker and connection event at INFO, and benign shutdown races with
    # tracebacks; the build's own log and progress bar say what matters.
    dlog = logging.getLogger("distributed")
    level = dlog.level
    dlog.setLevel(logging.WARNING)
    try:
        with _dask_client(jobs, scheduler, cluster) as client:
            yield DaskExecutor(client)
    finally:
        dlog.setLevel(level)


@contextmanager
def _dask_client(jobs, scheduler, cluster):
    from distributed import Client, LocalCluster

    if cluster is not None:
        if cluster != "local":
            raise ModelsetError(
                f"--cluster {cluster!r}: only 'local' (a dask LocalCluster) is built in; "
                "for another cluster give its scheduler address with --scheduler"
            )
        n = os.cpu_count() if jobs == -1 else jobs
        # One thread per worker (see _check_workers). The scheduler's HTTP server starts even
        # without a dashboard: a random loopback port, so that builds never collide on 8787.
        # Workers log at CRITICAL only: at shutdown a heartbeat in flight logs a traceback at ERROR
        # (benign), and a real failure reaches the build through its future anyway.
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.CRITICAL,
            ) as lc,
            Client(lc) as client,
        ):
            log.info("dask LocalCluster at %s with %d worker processes", lc.scheduler_address, n)
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except Exception as e:  # refused, timed out, malformed address: all mean "cannot use it"
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ModelsetError(f"--scheduler {scheduler}: cannot reach a dask scheduler there ({reason})") from None
    with client:
        n = _check_workers(client, scheduler)
        log.info("dask scheduler %s with %d single-threaded workers", scheduler, n)
        yield client
