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

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import splits
from .errors import ModelsetError
from .registry import Registry
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
SPLITS = Registry("split", (TASK_ID, RETRIEVAL, CROSS_FAMILY, EPOCH))  # in drawing order


# Root attribute: JSON {key: bin edges} of the sampled numeric hyper-parameters, which the hparams
# protocol predicts as the bin a model's value falls in (written by the build from the preset).
SAMPLE_BINS = "sample_bins"


def grid_factors(ms) -> list[str]:
    """The training hyper-parameters the zoo's preset sweeps ([grid] and [sample] keys of [train])
    that vary between its models."""
    try:  # the archive's own record, which a file from elsewhere may have made anything
        preset = tomllib.loads(str(ms.attrs.get("preset", "")))
    except tomllib.TOMLDecodeError as e:
        raise ModelsetError(
            f"{ms.path}: root attribute preset is not TOML ({e}); the archive is damaged, rebuild it"
        ) from None
    grid, sample, train = preset.get("grid", {}), preset.get("sample", {}), preset.get("train", {})
    if not all(isinstance(t, dict) for t in (grid, sample, train)) or not (set(grid) | set(sample)) & set(train) <= set(
        ms.models.columns
    ):
        raise ModelsetError(
            f"{ms.path}: the preset's [grid], [sample] and [train] are not tables of /models columns; the archive is damaged, rebuild it"
        )
    return [k for k in [*grid, *sample] if k in train and ms.models[k].nunique() > 1]


def sample_bins(ms) -> dict[str, list[float]]:
    """{key: bin edges} of the zoo's sampled numeric hyper-parameters, as its archive states them."""
    text = ms.attrs.get(SAMPLE_BINS)
    return json.loads(text) if text else {}


def factor_codes(ms, column: str, ids) -> np.ndarray:
    """Class codes of a swept hyper-parameter: its bin for a sampled number, else its value's code."""
    edges = sample_bins(ms).get(column)
    if edges is None:
        return codes(ms, column, ids)
    values = ms.models[column].loc[ids].to_numpy(np.float64)
    return np.digitize(values, edges[1:-1]).astype(np.int64)  # bin i: edges[i] <= value < edges[i + 1]


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
    return {f"hparam.{k}": factor_codes(ms, k, ids) for k in grid_factors(ms)}


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
    # Every zoo of at least ``min_tasks`` tasks has it: a result on such a zoo without it is not a result.
    required: bool = False
    classifies: bool = False  # scored by the method's own task classifier (predict_scores) when it has one
    ranks: bool = False  # its first headline metric ranks the board where every result holds it (RANK_BY)
    min_tasks: int = 1  # fewer tasks than this, and the protocol does not apply (task relations need two)


PROTOCOLS: Registry[Protocol] = Registry(
    "protocol",
    (
        Protocol(
            "task_id",
            TASK_ID,
            "TaskIdEvaluator",
            ("top1", "top5"),
            "relations",
            required=True,
            classifies=True,
            min_tasks=2,
        ),
        Protocol(
            "retrieval",
            RETRIEVAL,
            "RetrievalEvaluator",
            ("map", "cmc1", "cmc5", "cmc10"),
            "relations",
            required=True,
            ranks=True,
            min_tasks=2,
        ),
        Protocol(
            "relation", RETRIEVAL, "RelationEvaluator", ("spearman", "ndcg10"), "relations", required=True, min_tasks=2
        ),
        Protocol("clustering", RETRIEVAL, "ClusteringEvaluator", ("nmi",), "relations", required=True, min_tasks=2),
        Protocol("cross_family", CROSS_FAMILY, "RetrievalEvaluator", ("map", "cmc1"), "relations", min_tasks=2),
        Protocol(
            "accuracy",
            TASK_ID,
            "RegressionEvaluator",
            ("kendall", "r2"),
            "properties",
            _accuracy,
            required=True,
            ranks=True,
        ),
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
    ),
)

HEADLINE = [f"{p.name}.{m}" for p in PROTOCOLS.values() for m in p.headline]


# The metrics the board ranks by, in order: the first headline of each protocol that ranks, the
# first one a zoo's results all hold (retrieval's mAP; accuracy's Kendall tau on a zoo of one task).
RANK_BY = [f"{p.name}.{p.headline[0]}" for p in PROTOCOLS.values() if p.ranks]


def required(n_tasks: int) -> list[str]:
    """The headline metrics every result on a zoo of ``n_tasks`` tasks must hold: which protocols
    are required is a property of the zoo (a zoo of one task has no task relations to score)."""
    return [f"{p.name}.{m}" for p in PROTOCOLS.values() if p.required and n_tasks >= p.min_tasks for m in p.headline]


def skipped(n_tasks: int) -> dict[str, str]:
    """{protocol: why it is not scored} of the required protocols a zoo of ``n_tasks`` tasks skips."""
    return {
        p.name: f"needs {p.min_tasks} or more tasks; the zoo holds {n_tasks}"
        for p in PROTOCOLS.values()
        if p.required and n_tasks < p.min_tasks
    }


def required_splits(n_tasks: int) -> list[str]:
    """The splits every archive of a zoo of ``n_tasks`` tasks stores: those its required protocols read."""
    return list(dict.fromkeys(p.split.name for p in PROTOCOLS.values() if p.required and n_tasks >= p.min_tasks))


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
    n_tasks = len(ms.tasks)
    return [
        p
        for p in PROTOCOLS.values()
        if p.split.name in stored
        and n_tasks >= p.min_tasks
        and p.applies(ms)
        and (splits_only is None or p.split.name in splits_only)
    ]


def split_targets(ms, split: Split, ids, protocols=None) -> dict:
    """{target: values of rows ``ids``} of every applicable protocol on ``split``."""
    out = {}
    for p in protocols if protocols is not None else applicable(ms):
        if p.split is split and p.targets is not None:
            out.update(p.targets(ms, np.asarray(ids, dtype=np.int64)))
    return out
