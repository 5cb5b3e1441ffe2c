"""The fixed splits of the benchmark protocols, drawn once at build time and stored in the archive.

- ``task_id``: per task, a share of its seeds trains, the rest is held out (identify their task).
- ``retrieval``: a share of the tasks trains; the other tasks are unseen, and each unseen task's
  models are divided into queries and gallery.
Splits are by seed, not by model: every grid point of a held-out seed is held out together.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

def _cut(n: int, fraction: float) -> int:
    """How many of n go to the first part: round(n*fraction), leaving both parts non-empty."""
    return min(max(round(n * fraction), 1), n - 1) if n > 1 else n


def make_splits(models: pd.DataFrame, n_tasks: int, fractions: dict, seed: int) -> dict:
    """{protocol: {part: sorted model ids}} from columns ``id``, ``task`` and ``seed``."""
    rng = np.random.default_rng([seed, 0x5EED])
    by_task_seed = models.groupby(["task", "seed"])["id"].apply(list)
    seeds_of = models.groupby("task")["seed"].unique()

    tid = {"train": [], "test": []}
    for task in range(n_tasks):
        seeds = rng.permutation(np.sort(seeds_of[task]))
        k = _cut(len(seeds), fractions["task_id_train_fraction"])
        for part, chosen in (("train", seeds[:k]), ("test", seeds[k:])):
            for s in chosen:
                tid[part] += by_task_seed[(task, s)]

    tasks = rng.permutation(n_tasks)
    k = _cut(n_tasks, fractions["retrieval_train_fraction"])
    ret = {"train": [], "query": [], "gallery": []}
    for task in tasks[:k]:
        ret["train"] += models.loc[models.task == task, "id"].tolist()
    for task in tasks[k:]:
        seeds = rng.permutation(np.sort(seeds_of[task]))
        q = _cut(len(seeds), fractions["retrieval_query_fraction"])
        for part, chosen in (("query", seeds[:q]), ("gallery", seeds[q:])):
            for s in chosen:
                ret[part] += by_task_seed[(task, s)]
    out = {
        "task_id": {p: np.sort(np.asarray(v, dtype=np.int64)) for p, v in tid.items()},
        "retrieval": {p: np.sort(np.asarray(v, dtype=np.int64)) for p, v in ret.items()},
    }
    families = list(dict.fromkeys(models["family"]))  # in plan order
    if len(families) > 1:  # a mixed zoo: find the task through the parameterization
        fam = models.set_index("id")["family"]
        r = out["retrieval"]
        out["cross_family"] = {"train": r["train"],
                               "query": r["query"][(fam.loc[r["query"]] == families[0]).to_numpy()],
                               "gallery": r["gallery"][(fam.loc[r["gallery"]] != families[0]).to_numpy()]}
    return out
