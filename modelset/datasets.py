"""Base datasets: images, labels and one fixed train/test split per dataset.

A dataset source is registered by name; a task (see ``tasks``) selects classes from it.
The default, scikit-learn's digits, ships inside the package so that it works offline. The
torchvision datasets (MNIST, Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100, SVHN; see
``torchvision_sources``) are read from files in a data directory: ``load_dataset(name, root)``,
else the directory named by the ``MODELSET_DATA`` environment variable.
"""

from __future__ import annotations

import hashlib
import os
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
    # Superclass of each class, where the dataset defines them (CIFAR-100's 20 coarse labels).
    superclasses: tuple[int, ...] | None = None
    superclass_names: tuple[str, ...] = ()

    @cached_property
    def fingerprint(self) -> str:
        """Digest of the data as models see it: a change retrains, never reuses, old results."""
        h = hashlib.sha256()
        for a in (self.images, self.labels, self.test):
            h.update(np.ascontiguousarray(a).tobytes())
        if self.superclasses is not None:  # they grade the relations; digits has none (digest unchanged)
            h.update(np.asarray(self.superclasses, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


# The environment variable naming the data directory of file-based datasets (``--data-root``).
DATA_ENV = "MODELSET_DATA"

_SOURCES = {}  # name -> function() -> Dataset: datasets that ship with modelset
_FILE_SOURCES = {}  # name -> object with .title, .load(root) and .download(root): read from files


def register_dataset(name):
    def deco(fn):
        _SOURCES[name] = fn
        return fn

    return deco


def register_file_dataset(source):
    """Register a dataset read from files under a data directory (see ``torchvision_sources``)."""
    _FILE_SOURCES[source.name] = source
    return source


def list_datasets() -> list[str]:
    return sorted({*_SOURCES, *_FILE_SOURCES})


def resolve_root(name: str, root=None) -> str | None:
    """The data directory for dataset ``name``: ``root`` if given, else $MODELSET_DATA, as an
    absolute path; None for a dataset that ships with modelset (it has no directory)."""
    if name in _SOURCES:
        return None
    if name not in _FILE_SOURCES:
        raise ModelsetError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    root = root or os.environ.get(DATA_ENV)
    if not root:
        src = _FILE_SOURCES[name]
        raise ModelsetError(
            f"dataset {name!r} is read from files and no data directory is set: give --data-root DIR "
            f"(or set {DATA_ENV}=DIR), with {src.accepted}; on a connected machine, --download "
            f"(or torchvision.datasets.{src.torchvision_class}(DIR, download=True)) fetches them"
        )
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root) and not os.path.isdir(root):
        raise ModelsetError(
            f"data directory {root!r} of dataset {name!r} is a file; give the directory that holds "
            f"{_FILE_SOURCES[name].accepted}"
        )
    return root


def load_dataset(name: str, root=None) -> Dataset:
    """The dataset ``name``. File-based datasets are read from ``root`` (else $MODELSET_DATA),
    after checking their files (``download_dataset`` fetches missing ones).

    Bad or missing files raise ModelsetError with one line naming the dataset, the directory
    and how to obtain the files; nothing is written.
    """
    root = resolve_root(name, root)
    return _load_builtin(name) if root is None else _FILE_SOURCES[name].load(root)


def download_dataset(name: str, root=None) -> str | None:
    """Fetch a file-based dataset's files into its data directory (through torchvision) if they
    are missing; returns the directory, or None for a dataset that ships with modelset."""
    root = resolve_root(name, root)
    if root is not None:
        _FILE_SOURCES[name].download(root)
    return root


@lru_cache(maxsize=4)
def _load_builtin(name: str) -> Dataset:
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


from . import torchvision_sources  # noqa: E402,F401  (registers the file-based datasets)
