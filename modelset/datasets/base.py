"""A base dataset (images, labels, one fixed train/test split), the registry of datasets by name,
and where a dataset's files are read from (``resolve_root``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ..errors import ModelsetError
from ..registry import Registry


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


@dataclass(frozen=True, eq=False)
class Packaged:
    """A dataset that ships with modelset (or is made in memory): it has no data directory."""

    name: str
    make: Callable[[], Dataset]
    from_files = False

    def load(self, root=None) -> Dataset:
        return _load_packaged(self)

    def download(self, root) -> None:
        pass


# Every dataset by name: ``Packaged`` ones, and file-based ones (``torchvision.TorchvisionSource``:
# ``from_files``, ``load(root)``, ``download(root)``, ``accepted`` and ``torchvision_class``).
DATASETS: Registry = Registry("dataset")


def register_dataset(name):
    """Register ``fn() -> Dataset`` as the packaged dataset ``name``."""

    def deco(fn):
        DATASETS.add(Packaged(name, fn))
        return fn

    return deco


def register_file_dataset(source):
    """Register a dataset read from files under a data directory (see ``torchvision``)."""
    return DATASETS.add(source)


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def resolve_root(name: str, root=None) -> str | None:
    """The data directory for dataset ``name``: ``root`` if given, else $MODELSET_DATA, as an
    absolute path; None for a dataset that ships with modelset (it has no directory)."""
    src = DATASETS.lookup(name)
    if not src.from_files:
        return None
    root = root or os.environ.get(DATA_ENV)
    if not root:
        raise ModelsetError(
            f"dataset {name!r} is read from files and no data directory is set: give --data-root DIR "
            f"(or set {DATA_ENV}=DIR), with {src.accepted}; on a connected machine, --download "
            f"(or torchvision.datasets.{src.torchvision_class}(DIR, download=True)) fetches them"
        )
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root) and not os.path.isdir(root):
        raise ModelsetError(
            f"data directory {root!r} of dataset {name!r} is a file; give the directory that holds {src.accepted}"
        )
    return root


def load_dataset(name: str, root=None) -> Dataset:
    """The dataset ``name``. File-based datasets are read from ``root`` (else $MODELSET_DATA),
    after checking their files (``download_dataset`` fetches missing ones).

    Bad or missing files raise ModelsetError with one line naming the dataset, the directory
    and how to obtain the files; nothing is written.
    """
    root = resolve_root(name, root)
    return DATASETS[name].load(root)


def download_dataset(name: str, root=None) -> str | None:
    """Fetch a file-based dataset's files into its data directory (through torchvision) if they
    are missing; returns the directory, or None for a dataset that ships with modelset."""
    root = resolve_root(name, root)
    if root is not None:
        DATASETS[name].download(root)
    return root


@lru_cache(maxsize=4)
def _load_packaged(src: Packaged) -> Dataset:
    return src.make()
