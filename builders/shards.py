"""Shard files: one work unit's results, named by the hash of its plan entries.

A shard is written atomically (``modelset.atomic``), so a shard that exists is complete;
a changed plan entry changes the name, so a stale shard is never reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelset.atomic import atomic_file
from modelset.schema import CURVES, METRICS

from .failpoints import failpoint
from .train import Checkpoints, ModelResult


def shard_path(shard_dir: Path, unit_hash: str) -> Path:
    return Path(shard_dir) / f"unit-{unit_hash}.npz"


def save_shard(path: Path, results: list[ModelResult]) -> None:
    """Write one work unit's results (in unit order) to ``path``, atomically: a plain .npz of
    ``params`` (n, P), ``metrics`` (n, 4, ``schema.METRICS``), ``epochs``, one array per curve,
    the family statistics as JSON bytes and ``family_params_<i>`` per non-dense model; with
    checkpoints also ``checkpoint_params`` (n, K, P), ``checkpoint_metrics`` (n, K, 4) and
    ``checkpoint_family_params_<i>`` (K, Q); no pickles."""
    epochs = max(len(r.curves["train_loss"]) for r in results)
    arrays = {
        "params": np.stack([r.params for r in results]).astype(np.float32),
        "metrics": np.array([[r.metrics[k] for k in METRICS] for r in results], dtype=np.float64),
        "epochs": np.array([len(r.curves["train_loss"]) for r in results], dtype=np.int64),
        # family extras: stats as JSON text, own parameters one array per model
        "family_stats": np.frombuffer(json.dumps([r.family_stats for r in results]).encode(), np.uint8),
    }
    for i, r in enumerate(results):
        if r.family_params is not None:
            arrays[f"family_params_{i}"] = r.family_params.astype(np.float32)
    if results[0].checkpoints is not None:  # one plan: every model of a unit keeps the same epochs
        arrays["checkpoint_params"] = np.stack([r.checkpoints.params for r in results]).astype(np.float32)
        arrays["checkpoint_metrics"] = np.stack([r.checkpoints.metrics for r in results]).astype(np.float64)
        for i, r in enumerate(results):
            if r.checkpoints.family_params is not None:
                arrays[f"checkpoint_family_params_{i}"] = r.checkpoints.family_params.astype(np.float32)
    for name in CURVES:
        c = np.full((len(results), epochs), np.nan, np.float32)
        for i, r in enumerate(results):
            c[i, : len(r.curves[name])] = r.curves[name]
        arrays[name] = c
    with atomic_file(path, before_replace=lambda: failpoint("shard-write")) as tmp:  # kill: written, not renamed
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_shard(path: Path) -> list[ModelResult]:
    """The ModelResults ``save_shard`` wrote, in unit order."""
    with np.load(path, allow_pickle=False) as z:
        params, metrics, epochs = z["params"], z["metrics"], z["epochs"]
        curves = {name: z[name] for name in CURVES}
        stats = json.loads(z["family_stats"].tobytes().decode())
        own = {i: z[f"family_params_{i}"] for i in range(len(params)) if f"family_params_{i}" in z.files}
        ckpts = [None] * len(params)
        if "checkpoint_params" in z.files:
            cp, cm = z["checkpoint_params"], z["checkpoint_metrics"]
            ckpts = [
                Checkpoints(
                    params=cp[i],
                    metrics=cm[i],
                    family_params=z[f"checkpoint_family_params_{i}"]
                    if f"checkpoint_family_params_{i}" in z.files
                    else None,
                )
                for i in range(len(params))
            ]
    return [
        ModelResult(
            params=params[i],
            curves={name: c[i, : epochs[i]] for name, c in curves.items()},
            metrics=dict(zip(METRICS, metrics[i].tolist())),
            family_params=own.get(i),
            family_stats=stats[i],
            checkpoints=ckpts[i],
        )
        for i in range(len(params))
    ]
