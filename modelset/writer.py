"""Writing an archive: everything goes to a temporary file beside the target, which is renamed
over it only once complete, so a reader never sees a half-written archive."""

from __future__ import annotations

import os
import platform
from contextlib import ExitStack
from datetime import UTC, datetime

import h5py
import numpy as np
import pandas as pd

from .archive import table_to_struct
from .atomic import atomic_file
from .datasets import Dataset
from .schema import CURVES, FORMAT, FORMAT_VERSION, encode_shape
from .tasks import RELATIONS, Task


def provenance() -> dict:
    import torch

    from . import __version__

    # SOURCE_DATE_EPOCH pins the creation time for byte-for-byte reproducible files.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    created = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return {
        "created": created.isoformat(timespec="seconds"),
        "modelset_version": __version__,
        "python_version": platform.python_version(),
        "torch_version": str(torch.__version__),  # a str subclass h5py cannot store
        "numpy_version": str(np.__version__),
        "h5py_version": str(h5py.__version__),
    }


class ArchiveWriter:
    """An archive being written: a temporary file that replaces ``path`` only once complete.

    In: the target path and the root attributes (format, version and provenance are added). Used
    as a context manager by the one writer (``builders.build.merge``), which calls, in order,
    ``write_dataset``, ``write_tasks``, ``create_architecture`` / ``create_family`` (empty
    parameter matrices of known size), then ``write_params`` / ``write_family_params`` row blocks
    as shards stream in, ``write_models``, ``write_curves`` and ``write_splits``. Out: on a clean
    exit the file is fsynced and renamed over ``path``; on an exception it is removed and ``path``
    is untouched. The layout of what it writes is data/README.md's format (``modelset.schema``).
    """

    def __init__(self, path, attrs: dict):
        self.path = os.fspath(path)
        self._stack = ExitStack()
        try:
            self.tmp = self._stack.enter_context(atomic_file(self.path))
            self.f = h5py.File(self.tmp, "w")
            self._stack.callback(self.f.close)  # closed before atomic_file fsyncs and renames
            self.f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **provenance(), **attrs})
        except BaseException as e:
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._stack.__exit__(exc_type, exc, tb)

    def write_dataset(self, ds: Dataset):
        g = self.f.create_group("dataset")
        g.attrs.update(
            {
                "name": ds.name,
                "n_samples": len(ds.labels),
                "n_classes": ds.n_classes,
                "normalization": ds.normalization,
                "input_shape": np.asarray(ds.input_shape),
                "class_names": np.array(ds.class_names, dtype=h5py.string_dtype()),
            }
        )
        if ds.superclasses is not None:  # e.g. CIFAR-100: the superclass of each class, and their names
            g.attrs["superclasses"] = np.asarray(ds.superclasses, dtype=np.int64)
            g.attrs["superclass_names"] = np.array(ds.superclass_names, dtype=h5py.string_dtype())
        g.create_dataset("test", data=ds.test)

    def write_tasks(self, tasks: list[Task], n_base_classes: int, relations: np.ndarray, relation: str = "jaccard"):
        table = pd.DataFrame(
            {
                "id": np.arange(len(tasks), dtype=np.int64),
                "name": [t.name for t in tasks],
                "transform": [t.transform for t in tasks],
                "n_classes": np.array([len(t.classes) for t in tasks], dtype=np.int64),
            }
        )
        self.f.create_dataset("tasks", data=table_to_struct(table))
        mask = np.zeros((len(tasks), n_base_classes), dtype=bool)
        for t in tasks:
            mask[t.id, list(t.classes)] = True
        self.f.create_dataset("tasks_classes", data=mask)
        r = self.f.create_dataset("relations", data=relations.astype(np.float32))
        r.attrs["kind"] = relation
        r.attrs["definition"] = RELATIONS[relation]

    def create_architecture(self, arch: str, layout_rows, n_rows: int, attrs: dict, n_checkpoints: int = 0):
        g = self.f.create_group(f"architectures/{arch}")
        g.attrs.update(attrs)
        _create_rows(g, layout_rows, n_rows, n_checkpoints)

    def create_family(self, arch: str, family: str, layout_rows, n_rows: int, options: dict, n_checkpoints: int = 0):
        """A family's own parameters (thresholds, gates, atoms, coefficients...), one row per model."""
        import json

        g = self.f.create_group(f"architectures/{arch}/families/{family}")
        g.attrs["options"] = json.dumps(options, sort_keys=True)
        _create_rows(g, layout_rows, n_rows, n_checkpoints)

    def write_checkpoints(self, arch: str, start_row: int, rows: np.ndarray):
        """(n, K, P) checkpoint rows of the models at rows start_row.. of ``arch``."""
        self.f[f"architectures/{arch}/checkpoints"][start_row : start_row + len(rows)] = rows

    def write_family_checkpoints(self, arch: str, family: str, row: int, values: np.ndarray):
        self.f[f"architectures/{arch}/families/{family}/checkpoints"][row] = values

    def write_checkpoint_table(self, table: pd.DataFrame):
        self.f.create_dataset("checkpoints", data=table_to_struct(table))

    def write_family_params(self, arch: str, family: str, row: int, values: np.ndarray):
        self.f[f"architectures/{arch}/families/{family}/params"][row] = values

    def write_params(self, arch: str, start_row: int, rows: np.ndarray):
        self.f[f"architectures/{arch}/params"][start_row : start_row + len(rows)] = rows

    def write_models(self, models: pd.DataFrame):
        self.f.create_dataset("models", data=table_to_struct(models))

    def write_curves(self, curves: dict[str, np.ndarray]):
        g = self.f.create_group("curves")
        for name in CURVES:
            g.create_dataset(name, data=curves[name].astype(np.float32), compression="gzip", shuffle=True)

    def write_tables(self, models: pd.DataFrame, curves: dict[str, np.ndarray], checkpoint_rows: list[dict]):
        """/models, /curves and (where there are rows) /checkpoints; returns the zoo the splits are
        drawn from."""
        from .schema import CHECKPOINT_TABLE_COLUMNS
        from .splits import Zoo

        self.write_models(models)
        self.write_curves(curves)
        checkpoints = None
        if checkpoint_rows:
            checkpoints = pd.DataFrame.from_records(checkpoint_rows, columns=CHECKPOINT_TABLE_COLUMNS)
            self.write_checkpoint_table(checkpoints)
        return Zoo(models, checkpoints)

    def write_splits(self, splits: dict):
        from .protocols import SPLITS
        from .splits import VAL_RULE

        self.f.require_group("splits").attrs.update(VAL_RULE)  # how a dataset carves val from train
        for name, parts in splits.items():
            g = self.f.create_group(f"splits/{name}")
            g.attrs["description"] = SPLITS[name].description
            for part, ids in parts.items():
                g.create_dataset(part, data=np.asarray(ids, dtype=np.int64))


def _create_rows(g, layout_rows, n_rows: int, n_checkpoints: int = 0) -> None:
    """A ``layout`` table and an empty ``params`` matrix (one float32 row per model) in ``g``;
    with checkpoints, an empty ``checkpoints`` array (model, checkpoint, value)."""
    table = pd.DataFrame(
        [{"name": n, "shape": encode_shape(s), "offset": o, "size": z, "trainable": t} for n, s, o, z, t in layout_rows]
    )
    g.create_dataset("layout", data=table_to_struct(table))
    width = int(table["size"].sum())
    # ~256 KiB chunks of whole rows: reading one model decompresses little.
    g.create_dataset(
        "params",
        shape=(n_rows, width),
        dtype="<f4",
        chunks=(max(1, min(n_rows, 2**18 // (4 * width))), width),
        compression="gzip",
        compression_opts=4,
        shuffle=True,
    )
    if n_checkpoints:  # a chunk holds one epoch of several models: params(epoch=e) reads only epoch e
        g.create_dataset(
            "checkpoints",
            shape=(n_rows, n_checkpoints, width),
            dtype="<f4",
            chunks=(max(1, min(n_rows, 2**18 // (4 * width))), 1, width),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
