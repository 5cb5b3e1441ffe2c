"""preset -> plan -> work units -> executor -> shards -> one writer -> archive.

Determinism: a unit's composition comes from the plan alone, and every unit trains with torch
pinned to one intra-op thread (thread count changes reduction order), in this process, a local
worker process or a dask worker alike; so weights depend only on the preset (and the device type), never
on --jobs, the executor or interruptions.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import sys
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from modelset.datasets import download_dataset, load_dataset, resolve_root
from modelset.errors import ModelsetError
from modelset.families import FAMILIES
from modelset.preset import Preset
from modelset.protocols import SAMPLE_BINS, make_splits
from modelset.schema import CHECKPOINT_EPOCHS, CURVES, FORMAT_VERSION, METRICS, model_columns, param_checksum
from modelset.splits import Zoo
from modelset.writer import ArchiveWriter

from .batched import train_batched
from .executors import open_executor
from .failpoints import failpoint
from .plan import Plan, make_plan, unit_hash, work_units
from .shards import load_shard, save_shard, shard_path
from .train import model_layout, train_reference

log = logging.getLogger("modelset.build")


def _lock(fh) -> None:
    """An exclusive lock held as long as ``fh`` is open, or BlockingIOError / PermissionError."""
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextmanager
def pinned_threads(n: int = 1):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@cache
def hold_freed_memory() -> bool:
    """Keep memory that training frees in the process, for its next step (glibc's mallopt; elsewhere
    nothing to do). By default glibc hands blocks above its mmap threshold, and any free top of the
    heap, back to the kernel, so every step's activations, allocated anew, fault in fresh zeroed
    pages: time spent in the kernel, not training. The weights are the same either way; peak memory
    too, since the same sizes come back each step (benchmarks/executor_cost.py compares builds)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    settings = ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
    return all(mallopt(k, v) == 1 for k, v in settings)  # 32 MiB: glibc's largest mmap threshold


def train_unit(unit, device: str = "cpu", data_root=None) -> tuple[str, list]:
    """Train one work unit; runs in a worker or in-process, with the same thread pinning. The
    data directory comes as an argument (workers share no environment with the build)."""
    failpoint("unit")  # in whichever process trains it: a worker's death, for tests
    hold_freed_memory()
    with pinned_threads(1):
        # A unit can hold both kinds: a grid may give some entries augmentation or an lr schedule.
        batched = [e for e in unit if e.engine == "batched"]
        done = dict(zip((e.id for e in batched), train_batched(batched, device, data_root))) if batched else {}
        results = [done[e.id] if e.id in done else train_reference(e, device, data_root) for e in unit]
        return unit_hash(unit, torch.device(device).type), results


def device_type(device: str) -> str:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelsetError(f"--device {device!r} is not a torch device; use cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ModelsetError(f"--device {device!r}: only cpu and cuda are supported")
    return dev.type


def check_device(device: str) -> str:
    """The device's type, after checking that torch can use it here."""
    kind, dev = device_type(device), torch.device(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ModelsetError(
                f"--device {device}: torch sees no GPU here (torch.cuda.is_available() is False); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelsetError(f"--device {device}: torch sees only {torch.cuda.device_count()} GPU(s)")
    return kind


def _worker_device_check(device: str) -> str | None:
    """Run on each dask worker: why ``device`` is unusable there, or None."""
    try:
        check_device(device)
    except ModelsetError as e:
        return str(e)
    return None


def shard_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.shards"


def is_up_to_date(out: Path, plan: Plan) -> bool:
    """Whether ``out`` is this plan's archive: same models (plan hash), format and resolved preset
    (its [splits] and the split defaults are not in the plan hash)."""
    try:
        with h5py.File(out, "r") as f:
            return (
                f.attrs.get("plan_hash") == plan.hash
                and int(f.attrs.get("format_version", 0)) == FORMAT_VERSION
                and f.attrs.get("preset") == plan.preset.text
            )
    except OSError:
        return False


def build(
    preset: Preset,
    out,
    jobs: int = 1,
    force: bool = False,
    keep_shards: bool = False,
    progress: bool = True,
    device: str = "cpu",
    scheduler: str | None = None,
    cluster: str | None = None,
    data_root=None,
    download: bool = False,
) -> dict:
    """Build ``preset`` into the archive ``out``; resume from any shards already trained.

    Units train in ``jobs`` local processes (this one included; -1: one per core), or on dask: a
    cluster's ``scheduler`` address, or ``cluster="local"`` for a LocalCluster of ``jobs`` worker
    processes. File-based datasets are read from ``data_root`` (else $MODELSET_DATA); every worker
    is handed that directory, so on a remote cluster it must hold the same files on each worker.
    ``download`` lets torchvision fetch missing files into it first. Bad arguments raise
    ModelsetError with one line, before anything is written.
    """
    if not isinstance(jobs, int) or jobs == 0 or jobs < -1:
        raise ModelsetError(f"--jobs must be >= 1 or -1 (one per core), got {jobs!r}")
    out = Path(out)
    if out.is_dir():
        raise ModelsetError(f"--out {str(out)!r} is a directory; give a file path such as {out}/{preset.name}.h5")
    remote = scheduler is not None
    data_root = resolve_root(preset["dataset"], data_root)
    if download:
        download_dataset(preset["dataset"], data_root)
    # On a remote cluster the GPU must be on the workers, checked once connected.
    plan = make_plan(
        preset, device_type(device) if remote else check_device(device), data_root
    )  # validates tasks against the dataset before anything is written
    if not force and out.exists() and is_up_to_date(out, plan):
        return {"status": "up to date", "out": str(out), "models": len(plan.entries), "trained": 0}
    return _train_and_merge(
        plan,
        out,
        jobs=jobs,
        keep_shards=keep_shards,
        progress=progress,
        device=device,
        scheduler=scheduler,
        cluster=cluster,
        data_root=data_root,
    )


@contextmanager
def build_lock(out: Path):
    """One build per archive at a time; under the lock, temporary files of killed builds are litter."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as fh:
        try:
            _lock(fh)
        except (BlockingIOError, PermissionError):
            raise ModelsetError(f"another build is writing {out}; wait for it to finish or stop it") from None
        for stale in [*out.parent.glob(f".{out.name}.*.tmp"), *shard_dir_for(out).glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        yield


def _train_and_merge(plan, out, *, jobs, keep_shards, progress, device, scheduler, cluster, data_root) -> dict:
    preset, remote = plan.preset, scheduler is not None
    units = work_units(plan)
    shards = shard_dir_for(out)
    todo = [u for u in units if not shard_path(shards, plan.unit_hash(u)).exists()]
    n_todo = sum(len(u) for u in todo)
    with open_executor(jobs, scheduler, cluster) as executor:
        if remote and todo:
            problems = {p for p in executor.run_on_workers(lambda: _worker_device_check(device)).values() if p}
            if problems:
                raise ModelsetError(f"on the dask workers: {sorted(problems)[0]}")
        # Nothing is written before the executor and its workers are known to work.
        with build_lock(out):
            log.info(
                "%s: %d models in %d work units; %d already trained, %d to train",
                preset.name,
                len(plan.entries),
                len(units),
                len(plan.entries) - n_todo,
                n_todo,
            )
            with tqdm(
                total=len(plan.entries),
                initial=len(plan.entries) - n_todo,
                unit="model",
                desc="train",
                disable=not progress,
                mininterval=1.0,
                dynamic_ncols=True,
            ) as bar:
                for h, results in executor.map_unordered(train_unit, ((u, device, data_root) for u in todo)):
                    failpoint("train")  # a unit trained, its shard not yet written
                    save_shard(shard_path(shards, h), results)
                    bar.update(len(results))
            merge(plan, units, shards, out, data_root)
            if not keep_shards:
                shutil.rmtree(shards, ignore_errors=True)
    return {"status": "built", "out": str(out), "models": len(plan.entries), "trained": n_todo}


def merge(plan: Plan, units, shards: Path, out: Path, data_root=None) -> None:
    """The one writer: stream every shard, in plan order, into a temporary archive, then rename."""
    preset, entries = plan.preset, plan.entries
    dataset = load_dataset(preset["dataset"], data_root)
    archs = sorted({e.arch for e in entries})
    rows = {a: 0 for a in archs}
    counts = {a: sum(e.arch == a for e in entries) for a in archs}
    max_epochs = max(e.hparams["epochs"] for e in entries)
    curves = {name: np.full((len(entries), max_epochs), np.nan, np.float32) for name in CURVES}
    records = []
    attrs = {
        "name": preset.name,
        "preset": preset.text,
        "dataset": preset["dataset"],
        "seed": preset["seed"],
        "dataset_fingerprint": dataset.fingerprint,
        "plan_hash": plan.hash,
        "n_models": len(entries),
    }
    if preset.sample_bins:  # the bins the hparams protocol scores sampled numbers by
        attrs[SAMPLE_BINS] = json.dumps(preset.sample_bins, sort_keys=True)
    epochs_kept = preset.checkpoints
    if epochs_kept:  # only then: an archive without checkpoints is what it was before they existed
        attrs[CHECKPOINT_EPOCHS] = np.asarray(epochs_kept, dtype=np.int64)
    k = len(epochs_kept)
    checkpoint_rows = []
    finite = np.ones(len(entries), bool)
    with ArchiveWriter(out, attrs) as w:
        w.write_dataset(dataset)
        w.write_tasks(plan.tasks, dataset.n_classes, plan.relations, preset["tasks"]["relation"])
        for a in archs:
            layout_rows, arch_attrs = model_layout(next(e for e in entries if e.arch == a), data_root=data_root)
            w.create_architecture(a, layout_rows, counts[a], arch_attrs, k)
        # Each non-dense family's own parameters, beside the effective weights of its architecture.
        fam_rows = {}
        for a, fam in sorted({(e.arch, e.family) for e in entries if FAMILIES[e.family].own_params}):
            first = next(e for e in entries if (e.arch, e.family) == (a, fam))
            layout_rows, _ = model_layout(first, fam, data_root)
            w.create_family(
                a, fam, layout_rows, sum((e.arch, e.family) == (a, fam) for e in entries), dict(first.family_options), k
            )
            fam_rows[(a, fam)] = 0
        for unit in units:
            results = load_shard(shard_path(shards, plan.unit_hash(unit)))
            arch = unit[0].arch
            w.write_params(arch, rows[arch], np.stack([r.params for r in results]))
            if k:
                w.write_checkpoints(arch, rows[arch], np.stack([r.checkpoints.params for r in results]))
            failpoint("merge")
            for e, r in zip(unit, results):
                for name in CURVES:
                    curves[name][e.id, : len(r.curves[name])] = r.curves[name]
                family_row, stats = (
                    -1,
                    {
                        "sparsity": float(np.mean(r.params == 0)),
                        "sparsity_layers": "",
                        "groups": "",
                        "gates": "",
                        "n_family_params": int(r.params.size),
                    },
                )
                if r.family_params is not None:
                    family_row, stats = fam_rows[(arch, e.family)], r.family_stats
                    w.write_family_params(arch, e.family, family_row, r.family_params)
                    if k:
                        w.write_family_checkpoints(arch, e.family, family_row, r.checkpoints.family_params)
                    fam_rows[(arch, e.family)] += 1
                if k:
                    checkpoint_rows += _checkpoint_rows(e.id, epochs_kept, r.checkpoints)
                finite[e.id] = bool(np.isfinite(r.params).all())
                records.append(
                    {
                        "id": e.id,
                        "arch": e.arch,
                        "family": e.family,
                        "row": rows[arch],
                        "family_row": family_row,
                        "task": e.task,
                        "seed": e.seed,
                        "init_seed": e.init_seed,
                        "data_seed": e.data_seed,
                        **e.hparams,
                        **{k: r.metrics[k] for k in METRICS},
                        "n_params": int(r.params.size),
                        **stats,
                        "checksum": param_checksum(r.params),
                        "family_checksum": "" if r.family_params is None else param_checksum(r.family_params),
                    }
                )
                rows[arch] += 1
        models = pd.DataFrame.from_records(records, columns=model_columns(preset.recipe_keys))
        zoo = w.write_tables(models, curves, checkpoint_rows if k else [])
        # Runs that diverged (non-finite final weights) stay in the archive but enter no split, as
        # the Small CNN Zoo drops them: no protocol scores a method on them.
        if not finite.all():
            zoo = Zoo(zoo.models[finite[zoo.models["id"].to_numpy()]], zoo.checkpoints)
        w.write_splits(make_splits(zoo, preset["splits"], preset["seed"]))


def _checkpoint_rows(model_id: int, epochs, ckpt) -> list[dict]:
    """One model's rows of /checkpoints, one per epoch kept."""
    own = ckpt.family_params
    return [
        {
            "model": model_id,
            "epoch": epoch,
            **dict(zip(METRICS, ckpt.metrics[j].tolist())),
            "checksum": param_checksum(ckpt.params[j]),
            "family_checksum": "" if own is None else param_checksum(own[j]),
        }
        for j, epoch in enumerate(epochs)
    ]
