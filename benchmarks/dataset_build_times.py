"""Per-model training time and archive size of the real-dataset presets, measured without the data.

The real files cannot be downloaded everywhere, and compute does not depend on pixel values, so
this trains one work unit of each preset through the build's own code path (``train_unit``: the
batched engine or the reference loop, as the plan says, torch pinned to one thread), on a
synthetic dataset of the real one's shape: as many classes, train and test images per class,
channels and pixels. Each preset is timed at two epoch counts, t(E) = fixed + E * per_epoch is
fitted and extrapolated to the preset's epochs. The archive size comes from a small real archive
of the same architecture: its stored bytes per parameter row, times the preset's number of models.

    .venv/bin/python benchmarks/dataset_build_times.py [--models 10] [--out results.json] [--load]

``--load`` also times reading full-size CIFAR-100 files (random pixels, in the real pickled
format, with their own MD5 sums standing in for the published ones): what every build process pays
once (check, unpickle, standardise, fingerprint).

Everything printed is an estimate for the real data: same shapes and code, random pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from builders.build import build, train_unit
from builders.plan import make_plan, work_units
from modelset.datasets import Dataset, register_dataset
from modelset.preset import load_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, machine  # noqa: E402
from results import recorded  # noqa: E402

# Real shapes: (classes, train images per class, test images per class, C, H, W).
SHAPES = {
    "cifar100": (100, 500, 100, 3, 32, 32),
    "mnist": (10, 6000, 1000, 1, 28, 28),  # MNIST has 5,421..6,742 train images per class
    "fashion-mnist": (10, 6000, 1000, 1, 28, 28),
}
PRESETS = {"modelset500-cifar100": "cifar100", "mnist500": "mnist", "fashion-mnist500": "fashion-mnist"}


def synthetic(name: str) -> str:
    k, n_train, n_test, c, h, w = SHAPES[name]
    rng = np.random.default_rng(0)
    labels = np.r_[np.repeat(np.arange(k), n_train), np.repeat(np.arange(k), n_test)].astype(np.int64)
    test = np.r_[np.zeros(k * n_train, bool), np.ones(k * n_test, bool)]
    images = rng.standard_normal((len(labels), c, h, w), dtype=np.float32)
    supers = tuple(i // 5 for i in range(k)) if name == "cifar100" else None
    ds = Dataset(
        name=f"synthetic-{name}",
        images=images,
        labels=labels,
        test=test,
        class_names=tuple(map(str, range(k))),
        normalization="synthetic N(0, 1) pixels",
        superclasses=supers,
        superclass_names=tuple(map(str, range(20))) if supers else (),
    )
    register_dataset(ds.name)(lambda: ds)
    return ds.name


def time_models(preset_name: str, dataset: str, epochs: int, n_models: int) -> float:
    """Seconds per model of one work unit of ``n_models`` entries, trained as a build trains it."""
    preset = load_preset(preset_name, [f"dataset={dataset}", f"epochs={epochs}", f"unit_size={n_models}"])
    unit = work_units(make_plan(preset))[0]
    train_unit(unit[:1])  # warm-up: task tensors cached, kernels initialised
    t = time.perf_counter()
    train_unit(unit)
    return (time.perf_counter() - t) / len(unit)


def archive_bytes_per_model(preset_name: str, dataset: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "a.h5"
        build(
            load_preset(preset_name, [f"dataset={dataset}", "epochs=1", "seeds=4", "tasks.count=2", "unit_size=4"]),
            out,
            jobs=1,
            progress=False,
        )
        with h5py.File(out) as f:
            arch = next(iter(f["architectures"]))
            p = f[f"architectures/{arch}/params"]
            return p.id.get_storage_size() / p.shape[0], p.shape[1] * 4


def time_cifar100_load() -> dict:
    import hashlib
    import pickle

    import modelset.datasets.torchvision as tvs
    from modelset.datasets import load_dataset

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "cifar-100-python"
        folder.mkdir()
        for name, n in (("train", 50_000), ("test", 10_000)):
            fine = np.repeat(np.arange(100), n // 100)
            with open(folder / name, "wb") as fh:
                pickle.dump(
                    {
                        "fine_labels": fine.tolist(),
                        "coarse_labels": (fine // 5).tolist(),
                        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    },
                    fh,
                    protocol=2,
                )
        with open(folder / "meta", "wb") as fh:
            pickle.dump(
                {"fine_label_names": list(map(str, range(100))), "coarse_label_names": list(map(str, range(20)))},
                fh,
                protocol=2,
            )
        sums = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in ("train", "test", "meta")}
        tvs.published_md5 = lambda name: sums  # this process only: the files are ours, not the published ones
        t = time.perf_counter()
        ds = load_dataset("cifar100", root=d)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        _ = ds.fingerprint  # computed on first access
        t_fp = time.perf_counter() - t
        return {"seconds_load": t_load, "seconds_fingerprint": t_fp, "images_mib": ds.images.nbytes / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=10, help="models in the timed work unit (the presets' unit size)")
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--load", action="store_true", help="also time reading full-size CIFAR-100 files")
    args = ap.parse_args()
    m = machine()
    print(describe(m))
    results = {"machine": m, "presets": {}}
    for name in args.presets:
        dataset = synthetic(PRESETS[name])
        plan = make_plan(load_preset(name, [f"dataset={dataset}"]))
        full, n = plan.preset["train"]["epochs"], len(plan.entries)
        engines = sorted({e.engine for e in plan.entries})
        e1, e2 = (2, 4) if full > 5 else (1, 2)
        m1, m2 = (time_models(name, dataset, e, args.models) for e in (e1, e2))
        per_epoch = (m2 - m1) / (e2 - e1)
        fixed = max(m1 - e1 * per_epoch, 0.0)
        per_model = fixed + full * per_epoch
        stored, raw = archive_bytes_per_model(name, dataset)
        r = {
            "models": n,
            "epochs": full,
            "engines": engines,
            f"seconds_{e1}_epochs": m1,
            f"seconds_{e2}_epochs": m2,
            "seconds_per_epoch": per_epoch,
            "seconds_fixed": fixed,
            "seconds_per_model": per_model,
            "cpu_hours_one_process": n * per_model / 3600,
            "hours_2_jobs_ideal": n * per_model / 2 / 3600,
            "param_row_bytes_raw": raw,
            "param_row_bytes_stored": stored,
            "archive_params_mib": n * stored / 2**20,
        }
        results["presets"][name] = r
        print(
            f"{name} ({'/'.join(engines)} engine): {per_epoch:.2f} s/epoch + {fixed:.2f} s -> {per_model:.0f} s per model at {full} epochs; "
            f"{n} models = {r['cpu_hours_one_process']:.1f} h in one process, ~{r['hours_2_jobs_ideal']:.1f} h "
            f"with --jobs 2 on 2 free cores; params {stored / 1024:.0f} KiB/model stored "
            f"({raw / 1024:.0f} KiB raw) -> ~{r['archive_params_mib']:.0f} MiB",
            flush=True,
        )
    if args.load:
        r = results["cifar100_load"] = time_cifar100_load()
        print(
            f"cifar100 files: read and checked in {r['seconds_load']:.1f} s, fingerprint {r['seconds_fingerprint']:.1f} s, "
            f"{r['images_mib']:.0f} MiB of float32 images per process",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    with recorded("dataset_build_times"):
        sys.exit(main())
