"""Reading a modelset archive (format v2; data/README.md is the public spec).

ms = modelset.load("data/digits500.h5")
ms.models, ms.tasks            # pandas DataFrames
ms.relations                   # T x T known task relation
ms.params(ids)                 # numpy rows, read lazily from disk
ms.state_dict(i), ms.model(i)  # torch
ms.checkpoint_epochs           # epochs kept besides the final state (0: the init); [] if none
ms.checkpoints                 # one row per model and checkpoint: accuracies and losses
ms.params(ids, epoch=e)        # the same at checkpoint e; also state_dict(i, epoch=e), model(i, epoch=e)
ms.split("task_id")            # {"train": ids, "test": ids}
ms.h5                          # the read-only h5py.File itself: plain datasets and attributes
"""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pandas as pd

from .errors import ModelsetError
from .schema import (
    CHECKPOINT_COLUMNS,
    CHECKPOINT_EPOCHS,
    CURVES,
    FORMAT,
    FORMAT_VERSION,  # noqa: F401
    decode_shape,
)


def table_to_struct(df: pd.DataFrame) -> np.ndarray:
    """A DataFrame as a numpy structured array h5py can store: strings become UTF-8 bytes."""
    fields = []
    for col in df.columns:
        s = df[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            enc = s.astype(str).str.encode("utf-8")
            fields.append((col, enc.to_numpy(dtype=f"S{max(1, enc.str.len().max() or 1)}")))
        else:
            fields.append((col, s.to_numpy()))
    out = np.empty(len(df), dtype=[(n, a.dtype) for n, a in fields])
    for n, a in fields:
        out[n] = a
    return out


def struct_to_table(arr: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(arr)
    for col in df.columns:
        if arr.dtype[col].kind == "S":
            df[col] = df[col].str.decode("utf-8")
    return df


def read_layout(dataset) -> pd.DataFrame:
    """A stored layout table, with ``shape`` parsed back into tuples."""
    df = struct_to_table(dataset[()])
    df["shape"] = [decode_shape(s) for s in df["shape"]]
    return df


def layout_problem(layout: pd.DataFrame, width: int) -> str | None:
    """Why a layout table does not describe parameter rows of ``width`` values (its tensors one
    after another from 0, each as many values as its shape holds), or None."""
    at = 0
    for name, shape, offset, size in layout[["name", "shape", "offset", "size"]].itertuples(index=False):
        if offset != at or any(d < 0 for d in shape) or math.prod(shape) != size:
            return f"layout entry {name!r} (offset {offset}, size {size}, shape {shape}) is not the next tensor: at offset {at}, as many values as its shape holds"
        at += size
    return None if at == width else f"layout covers {at} values, parameter rows have {width}"


def _unflatten(row: np.ndarray, layout: pd.DataFrame):
    """A parameter row as a state dict, by a layout table (``read_layout``)."""
    from .archs import unflatten

    problem = layout_problem(layout, len(row))
    if problem:
        raise ModelsetError(f"{problem}; the archive is damaged, check it with `modelset verify`")
    return unflatten(row, layout[["name", "shape", "offset", "size"]].itertuples(index=False))


def open_h5(path) -> h5py.File:
    """Open an archive read-only, turning every way it can be wrong into one clear error."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelsetError(f"{path}: no such archive; build one with `modelset build --preset digits500`")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ModelsetError(f"{path}: not a readable HDF5 file (truncated or not an archive); rebuild it") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise ModelsetError(f"{path}: not a modelset archive (root attribute format != 'modelset')")
    problem = _outside_or_oversized(f, os.path.getsize(path))
    if problem:
        f.close()
        raise ModelsetError(f"{path}: {problem}; an archive holds its data itself, rebuild or re-download it")
    try:
        version = int(np.asarray(f.attrs.get("format_version", -1)).item())
    except (TypeError, ValueError):
        version = -1
    if version > FORMAT_VERSION:
        f.close()
        raise ModelsetError(
            f"{path}: archive format v{version} is newer than this modelset reads (v{FORMAT_VERSION}); upgrade modelset"
        )
    if version < 1:
        f.close()
        raise ModelsetError(f"{path}: archive has no valid format_version")
    if version < FORMAT_VERSION:
        name = f.attrs.get("name", "NAME")
        f.close()
        raise ModelsetError(
            f"{path}: archive format v{version} is older than this modelset reads "
            f"(v{FORMAT_VERSION}); rebuild it: modelset build --preset {name} --out {path}"
        )
    return f


# What an archive may declare beyond its own size: its data compresses little (float weights), so
# a dataset promising far more than the file holds is a decompression bomb or a never-written
# (fill value) dataset, either of which would exhaust memory when read.
MAX_EXPANSION = 64
MAX_SLACK = 256 << 20


def _outside_or_oversized(f: h5py.File, size: int) -> str | None:
    """Why ``f`` cannot be read safely, or None. HDF5 follows external links, external storage and
    virtual datasets to other files on disk: an archive from elsewhere could make a reader (the
    leaderboard's scorer) copy any file it can read, another archive's held-out splits or a key,
    into what it writes. Builds never make these, so any is refused."""
    declared = 0

    def check(name, link):
        nonlocal declared
        if isinstance(link, h5py.ExternalLink):
            return f"/{name} is an external link to {link.filename}"
        if isinstance(link, h5py.SoftLink):
            return None  # a name for an object of this file, checked under its own name
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                return f"/{name} is a virtual dataset (its data lives in other files)"
            if obj.external:
                return f"/{name} keeps its data in an external file ({obj.external[0][0]!r})"
            declared += obj.size * obj.dtype.itemsize
        return None

    problem = f.visititems_links(check)
    if problem is None and declared > MAX_EXPANSION * size + MAX_SLACK:
        problem = f"its datasets declare {declared} bytes, far more than its {size} bytes can hold"
    return problem


class Archive:
    """A read-only view of one archive. Tables are read on first use; parameters on request."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.h5 = open_h5(self.path)  # the open, read-only h5py.File: for what accessors don't cover
        self._cache = {}

    # -- tables -------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return {
            k: (v.item() if isinstance(v, np.generic) else v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in self.h5.attrs.items()
        }  # arrays (checkpoint_epochs) as lists

    @property
    def models(self) -> pd.DataFrame:
        if "models" not in self._cache:
            self._cache["models"] = struct_to_table(self.h5["models"][()]).set_index("id", drop=False)
        return self._cache["models"]

    @property
    def tasks(self) -> pd.DataFrame:
        if "tasks" not in self._cache:
            df = struct_to_table(self.h5["tasks"][()])
            mask = self.h5["tasks_classes"][()]
            df.insert(2, "classes", [tuple(int(c) for c in np.flatnonzero(m)) for m in mask])
            self._cache["tasks"] = df.set_index("id", drop=False)
        return self._cache["tasks"]

    @property
    def relations(self) -> np.ndarray:
        return self.h5["relations"][()]

    @property
    def architectures(self) -> list[str]:
        return list(self.h5["architectures"])

    def layout(self, arch: str) -> pd.DataFrame:
        return read_layout(self.h5[f"architectures/{self._arch(arch)}/layout"])

    def curves(self, name: str) -> np.ndarray:
        """Per-epoch curve (n_models x max_epochs, NaN past a model's last epoch)."""
        if name not in CURVES:
            raise ModelsetError(f"unknown curve {name!r}; available: {', '.join(CURVES)}")
        return self.h5[f"curves/{name}"][()]

    def split(self, name: str) -> dict[str, np.ndarray]:
        if name not in self.h5["splits"]:
            raise ModelsetError(f"unknown split {name!r}; available: {', '.join(self.h5['splits'])}")
        g = self.h5["splits"][name]
        return {part: g[part][()] for part in g}

    @property
    def checkpoint_epochs(self) -> list[int]:
        """The epochs kept besides the final state, increasing (0: the initial weights); [] if none."""
        return [int(e) for e in self.h5.attrs.get(CHECKPOINT_EPOCHS, [])]

    @property
    def checkpoints(self) -> pd.DataFrame:
        """One row per model and checkpoint epoch (by model, then epoch): ``model``, ``epoch`` and the
        train and test accuracy and loss there (train on the full train split, eval mode)."""
        if "checkpoints" not in self._cache:
            if "checkpoints" in self.h5:
                df = struct_to_table(self.h5["checkpoints"][()])[list(CHECKPOINT_COLUMNS)]
            else:
                df = pd.DataFrame(
                    {c: pd.Series(dtype="int64" if c in ("model", "epoch") else "float64") for c in CHECKPOINT_COLUMNS}
                )
            self._cache["checkpoints"] = df
        return self._cache["checkpoints"]

    def _checkpoint(self, epoch) -> int | None:
        """The index of ``epoch`` among the stored checkpoints; None for the final state."""
        if epoch is None:
            return None
        stored = self.checkpoint_epochs
        if epoch not in stored:
            have = f"stored epochs: {', '.join(map(str, stored))}" if stored else "this archive stores no checkpoints"
            raise ModelsetError(f"epoch {epoch!r} is not a stored checkpoint ({have}); epoch=None is the final state")
        return stored.index(epoch)

    # -- parameters ---------------------------------------------------------------------------
    def _arch(self, arch):
        if arch is None:
            if len(self.architectures) != 1:
                raise ModelsetError(f"the archive holds several architectures; pass arch= one of {self.architectures}")
            return self.architectures[0]
        if arch not in self.h5["architectures"]:
            raise ModelsetError(f"unknown architecture {arch!r}; the archive holds {self.architectures}")
        return arch

    def params(self, ids=None, arch=None, epoch=None) -> np.ndarray:
        """Parameter rows (float32, layout order) of the given model ids, all of one architecture.

        With no ids: every model of ``arch`` (or of the only architecture), in row order. ``epoch``
        None is the final state; a stored checkpoint epoch gives the rows at that epoch.
        """
        k = self._checkpoint(epoch)
        if ids is None:
            node = f"architectures/{self._arch(arch)}"
            return self.h5[f"{node}/params"][()] if k is None else self.h5[f"{node}/checkpoints"][:, k]
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        m = self.models
        unknown = np.setdiff1d(ids, m.index.to_numpy())
        if len(unknown):
            raise ModelsetError(f"unknown model id {unknown[0]}; ids run 0..{len(m) - 1}")
        archs = m.loc[ids, "arch"].unique()
        if len(archs) != 1:
            raise ModelsetError(f"params(): the ids span architectures {list(archs)}; ask one at a time")
        rows = m.loc[ids, "row"].to_numpy()
        uniq, inverse = np.unique(rows, return_inverse=True)  # h5py wants increasing indices
        node = f"architectures/{archs[0]}"
        n_rows = self.h5[f"{node}/params"].shape[0]
        if uniq[0] < 0 or uniq[-1] >= n_rows:
            raise ModelsetError(
                f"a model's row points outside the {n_rows} rows of /{node}/params; the archive is damaged, "
                f"check it with `modelset verify`"
            )
        return (self.h5[f"{node}/params"][uniq] if k is None else self.h5[f"{node}/checkpoints"][uniq, k])[inverse]

    def state_dict(self, model_id: int, epoch=None):
        return _unflatten(self.params([model_id], epoch=epoch)[0], self.layout(self.models.loc[model_id, "arch"]))

    def family_state_dict(self, model_id: int, epoch=None):
        """A model's own parameters by name: a family's thresholds, gates, atoms, coefficients; a
        dense model's weights. ``epoch`` as in ``params``."""
        from .families import FAMILIES

        row = self.models.loc[model_id]
        if not FAMILIES[row.family].own_params:
            return self.state_dict(model_id, epoch)
        k = self._checkpoint(epoch)
        g = self.h5[f"architectures/{row.arch}/families/{row.family}"]
        if not 0 <= int(row.family_row) < g["params"].shape[0]:
            raise ModelsetError(
                f"model {model_id}: family_row {row.family_row} outside /{g.name}/params; the archive is damaged, "
                f"check it with `modelset verify`"
            )
        values = g["params"][int(row.family_row)] if k is None else g["checkpoints"][int(row.family_row), k]
        return _unflatten(values, read_layout(g["layout"]))

    def model(self, model_id: int, epoch=None):
        """The torch module of one model, of its own family, in eval mode, with its stored weights
        (the final ones, or those of checkpoint ``epoch``)."""
        import json

        from .archs import create_model
        from .families import FAMILIES

        row = self.models.loc[model_id]
        g = self.h5[f"architectures/{row.arch}"]
        options = json.loads(g[f"families/{row.family}"].attrs["options"]) if FAMILIES[row.family].own_params else None
        net = create_model(
            row.arch,
            in_channels=int(g.attrs["in_channels"]),
            n_classes=int(g.attrs["n_classes"]),
            activation=row.activation,
            family=row.family,
            family_options=options,
        )
        net.load_state_dict(self.family_state_dict(model_id, epoch))
        return net.eval()

    def dataset(self, root=None):
        """The base dataset the archive's models were trained on (``modelset.datasets.Dataset``).

        Datasets read from files (MNIST, CIFAR, SVHN...) come from ``root``, else $MODELSET_DATA,
        in any container (gzipped or not, any layout the dataset accepts). An error names the
        directory if the files are not there, or if their content is not what the models saw (the
        dataset fingerprint differs).
        """
        from .datasets import load_dataset

        ds = load_dataset(self.attrs["dataset"], root=root)
        expected = self.attrs.get("dataset_fingerprint")
        if expected and ds.fingerprint != expected:
            raise ModelsetError(
                f"dataset {ds.name!r} here (fingerprint {ds.fingerprint}) is not the data this "
                f"archive's models saw (fingerprint {expected}); point root (--data-root) or $MODELSET_DATA at "
                f"the files the archive was built from"
            )
        return ds

    def task_data(self, task_id: int, split: str = "test", root=None):
        """(x, y) torch tensors of one task's train or test split, as the models saw them; the
        dataset comes from ``root`` as ``dataset`` says."""
        import torch

        from .tasks import task_arrays

        t = self.tasks.loc[task_id]
        x, y = task_arrays(self.dataset(root), t["classes"], t["transform"], split)
        return torch.from_numpy(x), torch.from_numpy(y)

    def summary(self) -> str:
        """What ``modelset info`` prints: provenance, counts, accuracy distribution, each family
        of a mixed zoo, split sizes and storage, one fact per line."""
        m, a = self.models, self.attrs
        acc = m["test_acc"].to_numpy()
        lines = [
            f"{self.path}: preset {a['name']!r}, format v{a['format_version']}, dataset {a['dataset']}, "
            f"built {a['created']} with modelset {a['modelset_version']}, torch {a['torch_version']}",
            f"models {len(m)}  tasks {len(self.tasks)}  seeds {m['seed'].nunique()}  "
            f"families {', '.join(sorted(m['family'].unique()))}",
        ]
        for arch in self.architectures:
            d = self.h5[f"architectures/{arch}/params"]
            lines.append(
                f"architecture {arch}: {d.shape[0]} models x {d.shape[1]} params "
                f"({d.id.get_storage_size() / 2**20:.2f} MiB stored, {d.size * 4 / 2**20:.2f} MiB raw)"
            )
        q = np.quantile(acc, [0, 0.05, 0.5, 0.95, 1])
        lines.append(
            f"test accuracy: mean {acc.mean():.4f}  min {q[0]:.4f}  p5 {q[1]:.4f}  median {q[2]:.4f}  "
            f"p95 {q[3]:.4f}  max {q[4]:.4f}"
        )
        lines.append(f"train accuracy: mean {m['train_acc'].mean():.4f}  min {m['train_acc'].min():.4f}")
        if m["family"].nunique() > 1:  # a mixed zoo: how each parameterization fared
            for fam, g in m.groupby("family"):
                lines.append(
                    f"family {fam}: {len(g)} models, test accuracy mean {g['test_acc'].mean():.4f} "
                    f"min {g['test_acc'].min():.4f}, sparsity {g['sparsity'].mean():.3f}, "
                    f"{int(g['n_family_params'].median())} own params"
                )
        if self.checkpoint_epochs:
            stored = sum(self.h5[f"architectures/{a}/checkpoints"].id.get_storage_size() for a in self.architectures)
            lines.append(
                f"checkpoints: epochs {', '.join(map(str, self.checkpoint_epochs))} of every model "
                f"({stored / 2**20:.2f} MiB stored)"
            )
        for name in self.h5["splits"]:
            lines.append(f"split {name}: " + "  ".join(f"{k} {len(v)}" for k, v in self.split(name).items()))
        lines.append(f"file size {os.path.getsize(self.path) / 2**20:.2f} MiB")
        return "\n".join(lines)

    # -- housekeeping -------------------------------------------------------------------------
    def close(self):
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        a = self.h5.attrs
        return (
            f"<modelset archive {os.path.basename(self.path)!r}: {len(self.models)} models, "
            f"{len(self.tasks)} tasks, preset {a.get('name')!r}, format v{a.get('format_version')}>"
        )


def load(path) -> Archive:
    """Open a modelset archive for reading."""
    return Archive(path)
