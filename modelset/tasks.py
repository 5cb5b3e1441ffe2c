"""Tasks (class subsets of a base dataset, with an optional input transform) and their relations.

Relation between two tasks = Jaccard overlap of their class sets, |A ∩ B| / |A ∪ B|. For the
3-class tasks of digits500 it takes the levels 0, 0.2 (one shared class), 0.5 (two) and 1 (same
task). Input transforms do not enter the relation: it speaks of what is being recognised.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .datasets import Dataset
from .errors import ModelsetError

# Transforms act on standardised (N, C, H, W) arrays and keep the shape.
TRANSFORMS = {
    "none": lambda x: x,
    "invert": lambda x: -x,
    "hflip": lambda x: x[..., ::-1],
    "vflip": lambda x: x[..., ::-1, :],
    "rot90": lambda x: np.rot90(x, 1, axes=(-2, -1)),
}

RELATION_DEFINITION = "jaccard: |classes(a) & classes(b)| / |classes(a) | classes(b)|"


@dataclass(frozen=True)
class Task:
    id: int
    classes: tuple[int, ...]  # base-dataset classes; task label i is classes[i] (sorted)
    transform: str = "none"
    name: str = ""


def balanced_subsets(n_classes: int, k: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` distinct k-subsets of range(n_classes), each class used about equally often.

    Greedy over a seeded shuffle of all subsets, keeping a subset only while none of its classes
    is over the cap ceil(count*k/n_classes); reshuffle until ``count`` are kept. Deterministic in
    ``seed``. Returned in lexicographic order.
    """
    combos = list(itertools.combinations(range(n_classes), k))
    if not 1 <= count <= len(combos):
        raise ModelsetError(
            f"tasks.count={count} is impossible: there are {len(combos)} subsets of {k} "
            f"out of {n_classes} classes; choose 1..{len(combos)}"
        )
    cap = -(-count * k // n_classes)
    rng = np.random.default_rng(seed)
    for _ in range(10_000):
        used = np.zeros(n_classes, int)
        chosen = []
        for i in rng.permutation(len(combos)):
            c = combos[i]
            if all(used[j] < cap for j in c):
                chosen.append(c)
                used[list(c)] += 1
                if len(chosen) == count:
                    return sorted(chosen)
    raise RuntimeError("no balanced subset selection found")  # not reached for sane inputs


def make_tasks(spec: dict, dataset: Dataset, seed: int) -> list[Task]:
    """Tasks from a preset's [tasks] table: explicit ``classes`` lists or balanced subsets."""
    transform = spec.get("transform", "none")
    if spec.get("classes"):
        class_sets = [tuple(sorted(int(c) for c in cs)) for cs in spec["classes"]]
    else:
        class_sets = balanced_subsets(dataset.n_classes, spec["classes_per_task"], spec["count"], seed)
    tasks = []
    for i, cs in enumerate(class_sets):
        bad = [c for c in cs if not 0 <= c < dataset.n_classes]
        if bad:
            raise ModelsetError(
                f"tasks.classes: class {bad[0]} is not in dataset {dataset.name!r} "
                f"(classes 0..{dataset.n_classes - 1})"
            )
        if len(set(cs)) != len(cs) or len(cs) < 2:
            raise ModelsetError(f"tasks.classes: task {list(cs)} needs at least 2 distinct classes")
        name = "-".join(dataset.class_names[c] for c in cs)
        tasks.append(Task(id=i, classes=cs, transform=transform, name=name))
    if len({(t.classes, t.transform) for t in tasks}) != len(tasks):
        raise ModelsetError("tasks.classes: the same task is listed twice; list each class set once")
    return tasks


def relation_matrix(tasks: list[Task]) -> np.ndarray:
    sets = [set(t.classes) for t in tasks]
    return np.array([[len(a & b) / len(a | b) for b in sets] for a in sets], dtype=np.float32)


def task_arrays(dataset: Dataset, classes, transform: str, split: str):
    """(x, y) of one task's split as numpy: x float32 (n, C, H, W), y int64 labels 0..k-1."""
    if split not in ("train", "test"):
        raise ModelsetError(f"split must be 'train' or 'test', got {split!r}")
    classes = np.asarray(sorted(classes))
    mask = np.isin(dataset.labels, classes) & (dataset.test == (split == "test"))
    x = np.ascontiguousarray(TRANSFORMS[transform](dataset.images[mask]), dtype=np.float32)
    y = np.searchsorted(classes, dataset.labels[mask]).astype(np.int64)
    return x, y
