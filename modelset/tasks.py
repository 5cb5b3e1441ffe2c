"""Tasks (class subsets of a base dataset, with an optional input transform) and their relations.

Tasks are drawn as balanced subsets, as consecutive class runs (ModelSet500's CIFAR-100 pairs
(2r, 2r+1)), or listed. The relation between two tasks is one of ``RELATIONS``, chosen by a
preset's ``tasks.relation``:

- ``jaccard`` (default): overlap of the class sets, |A ∩ B| / |A ∪ B|. For the 3-class tasks of
  digits500: 0, 0.2 (one shared class), 0.5 (two) and 1 (same task).
- ``superclass``: graded by the dataset's superclasses (CIFAR-100's 20). Each class of one task
  scores its best match in the other task: 1 for the same class, 0.5 for another class of the same
  superclass, 0 otherwise; the relation is the mean score over the classes of both tasks. For the
  pairs of modelset500-cifar100: 1 (same task), 0.5 (each class has a superclass mate in the
  other task), 0.375, 0.25 (one class has one), 0.

Input transforms do not enter a relation: it speaks of what is being recognised.
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
SUPERCLASS_DEFINITION = (
    "superclass: each class of task a scores its best match among the classes of task b, and each class "
    "of b its best match in a: 1 for the same class, 0.5 for another class of the same superclass of the "
    "base dataset, 0 otherwise; relation(a, b) = the sum of these scores / (|classes(a)| + |classes(b)|)"
)
# Relation kinds: the definition each archive stores with its /relations.
RELATIONS = {"jaccard": RELATION_DEFINITION, "superclass": SUPERCLASS_DEFINITION}
SELECTIONS = ("balanced", "consecutive")


@dataclass(frozen=True)
class Task:
    id: int
    classes: tuple[int, ...]  # base-dataset classes; task label i is classes[i] (sorted)
    transform: str = "none"
    name: str = ""
    superclasses: tuple[int, ...] = ()  # superclass of each class, where the dataset has them


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
    raise ModelsetError(
        f"tasks.count={count}: found no selection of {count} subsets of {k} out of {n_classes} "
        f"classes that uses every class at most {cap} times; lower tasks.count or use "
        'select = "consecutive" or explicit classes'
    )


def consecutive_runs(n_classes: int, k: int, count: int) -> list[tuple[int, ...]]:
    """Task r = classes (k*r, ..., k*r + k-1) for r = 0..count-1: ModelSet500's CIFAR-100 pairs
    (2r, 2r+1) for k = 2, count = 50."""
    if count * k > n_classes:
        raise ModelsetError(
            f"tasks.count={count} is impossible with tasks.select='consecutive': {count} runs of "
            f"{k} classes need {count * k} classes and the dataset has {n_classes}; "
            f"choose 1..{n_classes // k}"
        )
    return [tuple(range(k * r, k * r + k)) for r in range(count)]


def make_tasks(spec: dict, dataset: Dataset, seed: int) -> list[Task]:
    """Tasks from a preset's [tasks] table: explicit ``classes`` lists, else ``count`` tasks of
    ``classes_per_task`` classes selected as ``select`` says (balanced subsets or consecutive runs)."""
    transform = spec.get("transform", "none")
    relation = spec.get("relation", "jaccard")
    if relation == "superclass" and dataset.superclasses is None:
        raise ModelsetError(
            f"tasks.relation='superclass' needs a dataset with superclasses (cifar100); "
            f'dataset {dataset.name!r} has none: use relation = "jaccard"'
        )
    if spec.get("classes"):
        class_sets = [tuple(sorted(int(c) for c in cs)) for cs in spec["classes"]]
    elif spec.get("select", "balanced") == "consecutive":
        class_sets = consecutive_runs(dataset.n_classes, spec["classes_per_task"], spec["count"])
    else:
        class_sets = balanced_subsets(dataset.n_classes, spec["classes_per_task"], spec["count"], seed)
    tasks = []
    for i, cs in enumerate(class_sets):
        bad = [c for c in cs if not 0 <= c < dataset.n_classes]
        if bad:
            raise ModelsetError(
                f"tasks.classes: class {bad[0]} is not in dataset {dataset.name!r} (classes 0..{dataset.n_classes - 1})"
            )
        if len(set(cs)) != len(cs) or len(cs) < 2:
            raise ModelsetError(f"tasks.classes: task {list(cs)} needs at least 2 distinct classes")
        name = "-".join(dataset.class_names[c] for c in cs)
        supers = tuple(dataset.superclasses[c] for c in cs) if dataset.superclasses is not None else ()
        tasks.append(Task(id=i, classes=cs, transform=transform, name=name, superclasses=supers))
    if len({(t.classes, t.transform) for t in tasks}) != len(tasks):
        raise ModelsetError("tasks.classes: the same task is listed twice; list each class set once")
    return tasks


def relation_matrix(tasks: list[Task], kind: str = "jaccard") -> np.ndarray:
    """T x T known relations of the tasks, of one of the ``RELATIONS`` kinds."""
    if kind == "jaccard":
        sets = [set(t.classes) for t in tasks]
        return np.array([[len(a & b) / len(a | b) for b in sets] for a in sets], dtype=np.float32)
    if kind == "superclass":
        if any(len(t.superclasses) != len(t.classes) for t in tasks):
            raise ModelsetError("relation 'superclass' needs tasks of a dataset with superclasses")
        return np.array([[_superclass_relation(a, b) for b in tasks] for a in tasks], dtype=np.float32)
    raise ModelsetError(f"unknown relation {kind!r}; available: {', '.join(RELATIONS)}")


def _superclass_relation(a: Task, b: Task) -> float:
    def best(c, s, other: Task) -> float:
        return max(1.0 if c == d else 0.5 if s == t else 0.0 for d, t in zip(other.classes, other.superclasses))

    total = sum(best(c, s, b) for c, s in zip(a.classes, a.superclasses))
    total += sum(best(c, s, a) for c, s in zip(b.classes, b.superclasses))
    return total / (len(a.classes) + len(b.classes))


def task_arrays(dataset: Dataset, classes, transform: str, split: str):
    """(x, y) of one task's split as numpy: x float32 (n, C, H, W), y int64 labels 0..k-1."""
    if split not in ("train", "test"):
        raise ModelsetError(f"split must be 'train' or 'test', got {split!r}")
    classes = np.asarray(sorted(classes))
    mask = np.isin(dataset.labels, classes) & (dataset.test == (split == "test"))
    x = np.ascontiguousarray(TRANSFORMS[transform](dataset.images[mask]), dtype=np.float32)
    y = np.searchsorted(classes, dataset.labels[mask]).astype(np.int64)
    return x, y
