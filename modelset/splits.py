"""How each split is drawn, once at build time, for storage in the archive (``/splits/<name>``).

Every drawer takes the zoo's tables (``Zoo``), the preset's ``[splits]`` fractions, the build's
random generator and the splits drawn before it, and returns ``{part: sorted ids}``, or None where
the split does not apply to the zoo. ``modelset.protocols``
lists them in the order they draw, so one generator gives the same splits on every machine.

Splits are by seed, not by model: every grid point of a held-out seed is held out together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Zoo:
    models: pd.DataFrame  # columns id, task, seed, family
    checkpoints: pd.DataFrame | None = None  # columns model, epoch: one row per stored checkpoint


# The rule carving a ``val`` part from a split's ``train`` part (``modelset.weightspace``), stored as
# attributes of /splits by the build; an archive without them follows these defaults.
VAL_RULE = {"val_fraction": 0.2, "val_seed": 0}


def val_models(models, fraction: float, seed: int) -> np.ndarray:
    """The models a train part holds out for validation, sorted: of its distinct model ids, in
    increasing order, the first ``_cut(n, fraction)`` of ``default_rng(seed).permutation``. By
    model, so a checkpoint split's val holds every checkpoint of its models."""
    ids = np.unique(np.asarray(models, dtype=np.int64))
    return _ids(np.random.default_rng(seed).permutation(ids)[: _cut(len(ids), fraction)])


def _cut(n: int, fraction: float) -> int:
    """How many of n go to the first part: round(n*fraction), leaving both parts non-empty."""
    return min(max(round(n * fraction), 1), n - 1) if n > 1 else n


def _ids(v) -> np.ndarray:
    return np.sort(np.asarray(v, dtype=np.int64))


def _by_seed(models: pd.DataFrame, task, seeds) -> list:
    m = models[(models.task == task) & models.seed.isin(seeds)]
    return m["id"].tolist()


def task_id(zoo: Zoo, fractions: dict, rng: np.random.Generator, drawn: dict) -> dict:
    """Per task, a share of its seeds trains; the rest is held out."""
    models = zoo.models
    parts = {"train": [], "test": []}
    for task in np.sort(models.task.unique()):
        seeds = rng.permutation(np.sort(models.loc[models.task == task, "seed"].unique()))
        k = _cut(len(seeds), fractions["task_id_train_fraction"])
        parts["train"] += _by_seed(models, task, seeds[:k])
        parts["test"] += _by_seed(models, task, seeds[k:])
    return {p: _ids(v) for p, v in parts.items()}


def retrieval(zoo: Zoo, fractions: dict, rng: np.random.Generator, drawn: dict) -> dict:
    """A share of the tasks trains; each unseen task's seeds are divided into queries and gallery.
    None for a zoo of one task: there is no unseen task to retrieve."""
    models = zoo.models
    if models.task.nunique() < 2:
        return None
    tasks = rng.permutation(np.sort(models.task.unique()))
    k = _cut(len(tasks), fractions["retrieval_train_fraction"])
    parts = {"train": models.loc[models.task.isin(tasks[:k]), "id"].tolist(), "query": [], "gallery": []}
    for task in tasks[k:]:
        seeds = rng.permutation(np.sort(models.loc[models.task == task, "seed"].unique()))
        q = _cut(len(seeds), fractions["retrieval_query_fraction"])
        parts["query"] += _by_seed(models, task, seeds[:q])
        parts["gallery"] += _by_seed(models, task, seeds[q:])
    return {p: _ids(v) for p, v in parts.items()}


def cross_family(zoo: Zoo, fractions: dict, rng: np.random.Generator, drawn: dict) -> dict | None:
    """A mixed zoo's retrieval, across parameterizations: queries of the first family (in plan
    order), gallery of every other family."""
    models = zoo.models
    families = list(dict.fromkeys(models["family"]))
    if len(families) < 2 or "retrieval" not in drawn:
        return None
    fam = models.set_index("id")["family"]
    r = drawn["retrieval"]
    return {
        "train": r["train"],
        "query": r["query"][(fam.loc[r["query"]] == families[0]).to_numpy()],
        "gallery": r["gallery"][(fam.loc[r["gallery"]] != families[0]).to_numpy()],
    }


def epoch(zoo: Zoo, fractions: dict, rng: np.random.Generator, drawn: dict) -> dict | None:
    """Checkpoint rows (indices into ``/checkpoints``) of the task_id split's training and held-out
    models, each side capped at ``epoch_max_rows`` rows drawn at random, every epoch alike."""
    checkpoints = zoo.checkpoints
    if checkpoints is None or checkpoints["epoch"].nunique() < 2:
        return None
    cap = int(fractions["epoch_max_rows"])
    out = {}
    for part, ids in (("train", drawn["task_id"]["train"]), ("test", drawn["task_id"]["test"])):
        rows = np.flatnonzero(checkpoints["model"].isin(ids).to_numpy())
        out[part] = _ids(rng.choice(rows, size=cap, replace=False) if len(rows) > cap else rows)
    return out
