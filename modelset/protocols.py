"""The benchmark's protocols: one record each, the one place a protocol is defined.

A protocol reads one stored split (``Split``: its parts, how it is drawn, what its rows are and what
a method represents) and names its evaluator (a class in ``metrics.protocols``), its headline
metrics and, for property protocols, the targets it predicts. The build draws the splits, the public
file, the scoring and the board loop over these records; adding a protocol is one record here and
its evaluator.

What the public file holds for a split: the training rows' weights with their task labels and the
``targets`` of every protocol on it that applies, and the test rows' weights, shuffled, unlabelled.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import splits
from .errors import ModelsetError
from .splits import Zoo


@dataclass(frozen=True)
class Split:
    name: str
    train: str  # the part a method fits on (public with labels and targets)
    test: tuple[str, ...]  # the parts tested together (public weights only, shuffled)
    draw: Callable  # splits.<drawer>(zoo, fractions, rng, drawn) -> {part: ids} | None
    description: str  # stored with the split in the archive
    rows: str = "models"  # what the ids index: "models", or "checkpoints" (rows of /checkpoints)
    sees: str = "test"  # what a method represents: the test rows, or "all" (training rows first)


TASK_ID = Split(
    "task_id",
    "train",
    ("test",),
    splits.task_id,
    sees="all",
    description=(
        "held-out models: per task, train seeds vs held-out seeds (test); task identification, and the "
        "property protocols (accuracy, generalisation gap, hyper-parameters, family) of the held-out models"
    ),
)
RETRIEVAL = Split(
    "retrieval",
    "train",
    ("query", "gallery"),
    splits.retrieval,
    description=(
        "retrieval on unseen tasks: train tasks vs unseen tasks, whose models are split into query and gallery; "
        "score mAP and CMC@1/5/10 of queries against the gallery, relation fidelity and clustering"
    ),
)
CROSS_FAMILY = Split(
    "cross_family",
    "train",
    ("query", "gallery"),
    splits.cross_family,
    description=(
        "cross-family retrieval on unseen tasks: queries are the retrieval queries of the first family, the "
        "gallery the retrieval gallery models of every other family"
    ),
)
EPOCH = Split(
    "epoch",
    "train",
    ("test",),
    splits.epoch,
    rows="checkpoints",
    sees="all",
    description=(
        "checkpoints (rows of /checkpoints) of the task_id training models vs of its held-out models, "
        "each side capped at [splits] epoch_max_rows; predict each checkpoint's epoch"
    ),
)
SPLITS = {s.name: s for s in (TASK_ID, RETRIEVAL, CROSS_FAMILY, EPOCH)}  # in drawing order


def grid_factors(ms) -> list[str]:
    """The training hyper-parameters the zoo's preset sweeps ([grid] keys of [train])."""
    try:  # the archive's own record, which a file from elsewhere may have made anything
        preset = tomllib.loads(str(ms.attrs.get("preset", "")))
    except tomllib.TOMLDecodeError as e:
        raise ModelsetError(
            f"{ms.path}: root attribute preset is not TOML ({e}); the archive is damaged, rebuild it"
        ) from None
    grid, train = preset.get("grid", {}), preset.get("train", {})
    if not (isinstance(grid, dict) and isinstance(train, dict)) or not set(grid) & set(train) <= set(ms.models.columns):
        raise ModelsetError(
            f"{ms.path}: the preset's [grid] and [train] are not tables of /models columns; the archive is damaged, rebuild it"
        )
    return [k for k in grid if k in train and ms.models[k].nunique() > 1]


def codes(ms, column: str, ids) -> np.ndarray:
    """Class codes of a categorical model property: indices into its sorted distinct values."""
    col = ms.models[column]
    return np.searchsorted(np.unique(col.to_numpy()), col.loc[ids].to_numpy()).astype(np.int64)


def _accuracy(ms, ids) -> dict:
    return {"test_acc": ms.models.loc[ids, "test_acc"].to_numpy(np.float64)}


def _gap(ms, ids) -> dict:
    m = ms.models.loc[ids]
    return {"gap": (m["train_acc"] - m["test_acc"]).to_numpy(np.float64)}


def _hparams(ms, ids) -> dict:
    return {f"hparam.{k}": codes(ms, k, ids) for k in grid_factors(ms)}


def _family(ms, ids) -> dict:
    return {"family": codes(ms, "family", ids)}


def _epoch(ms, ids) -> dict:
    return {"epoch": ms.checkpoints["epoch"].to_numpy()[ids].astype(np.float64)}


@dataclass(frozen=True)
class Protocol:
    name: str
    split: Split
    evaluator: str  # class name in metrics.protocols
    headline: tuple[str, ...]  # metrics shown on the board, as "<name>.<metric>"
    board: str  # the board's table: "relations" (task relations) or "properties"
    targets: Callable | None = None  # (ms, row ids) -> {target: values}, the properties it predicts
    applies: Callable = field(default=lambda ms: True)  # beyond its split being stored
    required: bool = False  # every archive has it: a result without it is not a result
    classifies: bool = False  # scored by the method's own task classifier (predict_scores) when it has one


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("task_id", TASK_ID, "TaskIdEvaluator", ("top1", "top5"), "relations", required=True, classifies=True),
        Protocol(
            "retrieval", RETRIEVAL, "RetrievalEvaluator", ("map", "cmc1", "cmc5", "cmc10"), "relations", required=True
        ),
        Protocol("relation", RETRIEVAL, "RelationEvaluator", ("spearman", "ndcg10"), "relations", required=True),
        Protocol("clustering", RETRIEVAL, "ClusteringEvaluator", ("nmi",), "relations", required=True),
        Protocol("cross_family", CROSS_FAMILY, "RetrievalEvaluator", ("map", "cmc1"), "relations"),
        Protocol("accuracy", TASK_ID, "RegressionEvaluator", ("kendall", "r2"), "properties", _accuracy, required=True),
        Protocol("gap", TASK_ID, "RegressionEvaluator", ("kendall",), "properties", _gap, required=True),
        Protocol(
            "hparams",
            TASK_ID,
            "FactorsEvaluator",
            ("mean",),
            "properties",
            _hparams,
            applies=lambda ms: bool(grid_factors(ms)),
        ),
        Protocol("epoch", EPOCH, "RegressionEvaluator", ("kendall", "r2"), "properties", _epoch),
        Protocol(
            "family",
            TASK_ID,
            "FactorsEvaluator",
            ("mean",),
            "properties",
            _family,
            applies=lambda ms: ms.models["family"].nunique() > 1,
        ),
    )
}

HEADLINE = [f"{p.name}.{m}" for p in PROTOCOLS.values() for m in p.headline]
REQUIRED = [f"{p.name}.{m}" for p in PROTOCOLS.values() if p.required for m in p.headline]


def make_splits(zoo: Zoo, fractions: dict, seed: int) -> dict:
    """{split: {part: sorted ids}} of every split that applies to the zoo, drawn in registry order."""
    rng = np.random.default_rng([seed, 0x5EED])
    drawn = {}
    for s in SPLITS.values():
        parts = s.draw(zoo, fractions, rng, drawn)
        if parts is not None:
            drawn[s.name] = parts
    return drawn


def applicable(ms, splits_only=None) -> list[Protocol]:
    """The protocols an opened archive supports (its split is stored and it applies), optionally only
    those on the splits named in ``splits_only``."""
    stored = set(ms.h5["splits"]) if "splits" in ms.h5 else set()
    return [
        p
        for p in PROTOCOLS.values()
        if p.split.name in stored and p.applies(ms) and (splits_only is None or p.split.name in splits_only)
    ]


def split_targets(ms, split: Split, ids, protocols=None) -> dict:
    """{target: values of rows ``ids``} of every applicable protocol on ``split``."""
    out = {}
    for p in protocols if protocols is not None else applicable(ms):
        if p.split is split and p.targets is not None:
            out.update(p.targets(ms, np.asarray(ids, dtype=np.int64)))
    return out
