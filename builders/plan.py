"""Preset -> plan: one entry per model with everything that determines its weights.

A model's init and data-order seeds derive from the build seed, its task's identity (classes and
transform, not its position) and its seed value only, so models of one task differ only by seed,
and a grid point's models share the init of their seed: grid factors are controlled comparisons.
Sampled keys ([sample]) are drawn per model from the build seed, the task's identity, the grid
point and the seed: a model's draw depends on nothing else, so neither on workers nor on order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from modelset.archs import arch_spec
from modelset.datasets import load_dataset
from modelset.preset import Preset
from modelset.tasks import Task, make_tasks, relation_matrix

# Bump when training code changes what a plan entry produces: stale shards are then never reused.
# 2: entries name their training engine; the device type enters every hash.
# 3: the batched engine trains every family, and evaluates large tasks in chunks (other rounding).
# 4: the batched engine evaluates every split 32 images per model at a time (the same weights as
#    3; losses round otherwise, accuracies agree).
ENGINE_VERSION = 4


def derive_seed(*parts) -> int:
    """A 62-bit seed from any JSON-able parts, stable across processes and machines."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


@dataclass(frozen=True)
class PlanEntry:
    """One model of a plan: everything that determines its weights, and nothing about where it
    trains. ``key()`` (all but ``id`` and ``task``) enters the plan and shard hashes; two entries
    with equal keys train to the same weights. Built by ``make_plan``; trained by
    ``builders.build.train_unit``."""

    id: int
    task: int
    classes: tuple[int, ...]
    transform: str
    seed: int
    arch: str
    family: str
    dataset: str
    data_version: str  # the dataset's fingerprint
    train: tuple  # sorted (key, value) pairs of the training recipe
    family_options: tuple  # sorted (key, value) pairs of the family's layer options
    engine: str  # "batched" or "reference": equal only within float tolerance, so part of the key
    init_seed: int
    data_seed: int
    checkpoints: tuple[int, ...] = ()  # epochs whose weights and metrics are kept (0: the init)

    @property
    def hparams(self) -> dict:
        return dict(self.train)

    def key(self) -> dict:
        """What determines this model's weights (its id and task index do not)."""
        d = asdict(self)
        del d["id"], d["task"]
        if not d["checkpoints"]:  # absent when empty: plans without checkpoints keep their hashes
            del d["checkpoints"]
        return d


@dataclass(frozen=True)
class Plan:
    preset: Preset
    tasks: list[Task]
    entries: list[PlanEntry]
    # Device type the models train on. Not a property of any model, but CPU and GPU kernels agree
    # only within float tolerance, so it enters the hashes: their results are never mixed.
    device: str = "cpu"

    @property
    def relations(self):
        return relation_matrix(self.tasks, self.preset["tasks"]["relation"])

    @property
    def hash(self) -> str:
        return _hash(self.entries, self.device)

    def unit_hash(self, unit: list[PlanEntry]) -> str:
        return unit_hash(unit, self.device)


def batched_supports(arch: str, recipe: dict) -> bool:
    """Whether the batched engine reproduces the recipe: an architecture whose registry entry says
    so (any of its families), without augmentation or lr schedule. Anything else trains on the
    reference loop, entry by entry. Activations it has no kernels for (sigmoid, selu) train there too."""
    from .batched import ACT_BACKWARD  # its activations: the engine's own table

    return (
        arch_spec(arch).batched
        and recipe.get("augment", "none") == "none"
        and recipe.get("activation", "relu") in ACT_BACKWARD
        and not recipe.get("lr_step_size", 0)
    )


def draw_sample(sample: dict, seed: int) -> dict:
    """One model's values of the [sample] keys, in key order from ``default_rng(seed)``."""
    rng, out = np.random.default_rng(seed), {}
    for key in sorted(sample):
        (kind, args) = next(iter(sample[key].items()))
        if kind == "choice":
            out[key] = args[int(rng.integers(len(args)))]
        elif kind == "loguniform":
            out[key] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        else:
            out[key] = float(rng.uniform(args[0], args[1]))
    return out


def make_plan(preset: Preset, device: str = "cpu", data_root=None) -> Plan:
    """Every model of ``preset``: tasks drawn from the dataset (read from ``data_root``, else
    $MODELSET_DATA), whose fingerprint, not its location, enters each entry."""
    dataset = load_dataset(preset["dataset"], data_root)
    tasks = make_tasks(preset["tasks"], dataset, preset["seed"])
    grid, sample, keys = preset["grid"], preset["sample"], preset.recipe_keys
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    entries = []
    for task in tasks:
        identity = [list(task.classes), task.transform]
        for grid_point in points:
            point = dict(grid_point)
            family = point.pop("family", preset["family"])
            fam = preset["families"].get(family, {})
            base = {**preset["train"], **{k: v for k, v in fam.items() if k in preset["train"]}, **point}
            options = tuple(sorted((k, v) for k, v in fam.items() if k not in preset["train"]))
            for seed in preset.seed_values:
                drawn = draw_sample(sample, derive_seed(preset["seed"], "sample", identity, grid_point, seed))
                recipe = {k: v for k, v in {**base, **drawn}.items() if k in keys}
                train = tuple(sorted(recipe.items()))
                entries.append(
                    PlanEntry(
                        id=len(entries),
                        task=task.id,
                        classes=task.classes,
                        transform=task.transform,
                        seed=seed,
                        arch=preset["arch"],
                        family=family,
                        dataset=preset["dataset"],
                        data_version=dataset.fingerprint,
                        train=train,
                        family_options=options,
                        # what the batched engine cannot reproduce trains on the reference loop
                        engine=preset["engine"] if batched_supports(preset["arch"], recipe) else "reference",
                        init_seed=derive_seed(preset["seed"], "init", identity, seed),
                        data_seed=derive_seed(preset["seed"], "data", identity, seed),
                        checkpoints=preset.checkpoints,
                    )
                )
    if sample:
        entries = _group_for_passes(entries)
    return Plan(preset=preset, tasks=tasks, entries=entries, device=device)


def work_units(plan: Plan) -> list[list[PlanEntry]]:
    """Consecutive runs of ``unit_size`` entries of one architecture (with sampled keys, of one
    pass group: ``_pass_group``): fixed by the plan alone."""
    size = plan.preset["unit_size"]
    key = _pass_group if plan.preset["sample"] else (lambda e: e.arch)
    units = []
    for _, group in itertools.groupby(plan.entries, key=key):
        group = list(group)
        units += [group[i : i + size] for i in range(0, len(group), size)]
    return units


def _group_for_passes(entries: list[PlanEntry]) -> list[PlanEntry]:
    """Entries grouped (in plan order within a group, groups by first appearance) by what one
    batched pass shares and by train fraction, renumbered: with sampled keys, consecutive units
    then train in one pass of equal-sized training sets, not several small ones padded to the largest."""
    groups: dict[tuple, list[PlanEntry]] = {}
    for e in entries:
        groups.setdefault(_pass_group(e), []).append(e)
    return [replace(e, id=i) for i, e in enumerate(e for g in groups.values() for e in g)]


def _pass_group(e: PlanEntry) -> tuple:
    """What models must share to train in one batched pass of equal-sized training sets."""
    from .batched import PASS_KEYS

    hp = e.hparams
    return (e.arch, e.family, e.engine, *(str(hp.get(k)) for k in (*PASS_KEYS, "train_fraction")))


def _hash(entries: list[PlanEntry], device: str) -> str:
    blob = json.dumps([ENGINE_VERSION, device, [e.key() for e in entries]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def unit_hash(unit: list[PlanEntry], device: str = "cpu") -> str:
    return _hash(unit, device)[:20]
