"""Base datasets: images, labels and one fixed, stratified train/test split per dataset.

A dataset source is registered by name; a task (see ``tasks``) selects classes from it.
The default, scikit-learn's digits, ships inside the package so that it works offline.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

import numpy as np

from .errors import ModelsetError


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    images: np.ndarray  # (N, C, H, W) float32, standardised as ``normalization`` says
    labels: np.ndarray  # (N,) int64, base-dataset class index
    test: np.ndarray  # (N,) bool: the fixed test split
    class_names: tuple[str, ...]
    normalization: str  # how raw pixels became ``images``

    @cached_property
    def fingerprint(self) -> str:
        """Digest of the data as models see it: a change retrains, never reuses, old results."""
        h = hashlib.sha256()
        for a in (self.images, self.labels, self.test):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


_SOURCES = {}


def register_dataset(name):
    def deco(fn):
        _SOURCES[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_SOURCES)


@lru_cache(maxsize=4)
def load_dataset(name: str) -> Dataset:
    if name not in _SOURCES:
        raise ModelsetError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return _SOURCES[name]()


@register_dataset("digits")
def _digits() -> Dataset:
    """scikit-learn's digits (UCI, 1,797 8x8 images, values 0..16).

    The split was drawn once with ``train_test_split(test_size=0.25, stratify=labels,
    random_state=0)`` and is stored in the file, so it can never drift with a library version.
    """
    with resources.files("modelset.data").joinpath("digits.npz").open("rb") as fh:
        z = np.load(fh)
        images, labels, test = z["images"], z["labels"], z["test"]
    x = images.astype(np.float32)[:, None]
    # Zero-mean inputs: with raw 0..16 (or 0..1) pixels the small CNN trains markedly slower and
    # a few models per 500 stall below 85 %.
    mean, std = x[~test].mean(), x[~test].std()
    return Dataset(
        name="digits",
        images=(x - mean) / std,
        labels=labels.astype(np.int64),
        test=test.astype(bool),
        class_names=tuple(str(i) for i in range(10)),
        normalization=f"(pixel - {mean:.6g}) / {std:.6g}: mean and std of the train split's 0..16 pixels",
    )
