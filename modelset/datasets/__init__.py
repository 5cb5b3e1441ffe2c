"""Base datasets: images, labels and one fixed train/test split per dataset, by name.

A task (see ``modelset.tasks``) selects classes from one. The default, scikit-learn's digits
(``digits``), ships inside the package so that it works offline. The torchvision datasets (MNIST,
Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100, SVHN; ``torchvision``, the MNIST family's IDX files
read by ``idx``) are read from files in a data directory: ``load_dataset(name, root)``, else the
directory named by the ``MODELSET_DATA`` environment variable. ``base`` holds the record and the
registry; the modules imported here register their datasets.
"""

from . import digits, torchvision  # noqa: F401  (register their datasets)
from .base import (
    DATA_ENV,
    DATASETS,
    Dataset,
    Packaged,
    download_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
    register_file_dataset,
    resolve_root,
)

__all__ = [
    "DATA_ENV",
    "DATASETS",
    "Dataset",
    "Packaged",
    "download_dataset",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "register_file_dataset",
    "resolve_root",
]
