"""An archive as a metanetwork's training data: a torch ``Dataset`` of weights and targets.

    ds = WeightSpaceDataset(ms, split="task_id", part="train", target="test_acc", layout="nfn")
    loader = ds.loader(batch_size=64, shuffle=True)      # a DataLoader reading whole h5py chunks
    for (weights, biases), y in loader:                  # nfn: WeightSpaceFeatures(weights, biases)
        ...

Rows are a stored split's part (``ms.split(split)``; ``"all"``, every row of its parts): models,
or for the ``epoch`` split rows of /checkpoints. ``part="val"`` is carved from ``train`` by the rule stored in the archive
(``modelset.splits.val_models``: attributes ``val_fraction``, ``val_seed`` of /splits, defaults
0.2 and 0 for an archive without them); ``train`` is then the rest (``val=False``: the whole train
part, no val). ``epoch`` picks a stored checkpoint of model rows (None: the final weights).

Layouts (``LAYOUTS``): ``"nfn"``, per layer a weight (1, out, in, k, k) (the head (1, out, in)) and a
bias (1, out), as nfn's own Small CNN Zoo loader gives them, so that a batch's ``(weights,
biases)`` is a ``nfn.common.WeightSpaceFeatures`` and ``network_spec_from_wsfeat`` reads it; and
``"flat"``, the archive's rows (P,). Targets are the protocols' (``modelset.protocols``:
``test_acc``, ``gap``, ``hparam.<key>``, ``family``, ``epoch``) and ``task``, the task id the
``task_id`` protocol classifies; ``target=None`` gives the weights alone. On checkpoint rows a
model's property (``test_acc``...) is that of its final state, as the protocols define it.

Reading: an item's weights come from the h5py chunks that hold them, a batch at a time
(``__getitems__``, which a ``DataLoader`` calls with a whole batch, returns it stacked; ``collate``
passes it on without a copy per item), and ``ChunkBatchSampler`` makes batches of rows that share
chunks, so each chunk is decompressed about once per epoch.
Memory holds one batch's chunks, whatever the archive's size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .archive import Archive, load, open_h5
from .errors import ModelsetError
from .splits import VAL_RULE, val_models
from .symmetry import chain


def _nfn_batch(rows: np.ndarray, ds: WeightSpaceDataset):
    """Rows as ((weights (b, 1, out, in[, k, k]), ...), (biases (b, 1, out), ...))."""
    t = torch.from_numpy(rows)
    parts = [t[:, off : off + size].reshape(len(rows), 1, *shape) for off, size, shape in ds._tensors]
    return tuple(parts[0::2]), tuple(parts[1::2])


def _flat_batch(rows: np.ndarray, ds: WeightSpaceDataset):
    return torch.from_numpy(rows)


LAYOUTS = {"nfn": _nfn_batch, "flat": _flat_batch}  # name -> (rows (b, P), dataset) -> a batch


def _item(batch, i: int):
    """Item i of a batch: the same structure without the batch axis (what default_collate stacks)."""
    if isinstance(batch, torch.Tensor):
        return batch[i]
    return type(batch)(_item(b, i) for b in batch)


class Batch(Sequence):
    """What ``__getitems__`` returns: a sequence of items for any collate function, that also
    holds the batch already stacked, which ``collate`` hands over without copying each item."""

    def __init__(self, stacked):
        self.stacked = stacked

    def __len__(self) -> int:
        first = self.stacked
        while not isinstance(first, torch.Tensor):
            first = first[0]
        return len(first)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return _item(self.stacked, i)


def collate(batch):
    """The DataLoader's collate function for these datasets: a ``Batch`` as it is stacked, else torch's."""
    return batch.stacked if isinstance(batch, Batch) else default_collate(batch)


class WeightSpaceDataset(Dataset):
    """The models (or checkpoints) of one part of a stored split, as (weights, target) items; see
    the module docstring. ``ms`` is an open archive or its path."""

    def __init__(
        self,
        ms,
        split: str = "task_id",
        part: str = "train",
        target: str | None = "test_acc",
        epoch=None,
        layout: str = "nfn",
        val: bool = True,
    ):
        from .protocols import SPLITS

        self.ms = ms if isinstance(ms, Archive) else load(ms)
        if layout not in LAYOUTS:
            raise ModelsetError(f"unknown layout {layout!r}; available: {', '.join(LAYOUTS)}")
        if split not in SPLITS:
            raise ModelsetError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
        self.split, self.part, self.layout, self.target, self.epoch, self.val = split, part, layout, target, epoch, val
        self._checkpoint_rows = SPLITS[split].rows == "checkpoints"
        if self._checkpoint_rows and epoch is not None:
            raise ModelsetError(f"split {split!r} holds checkpoints of every epoch; epoch= applies to model splits")
        self.ids = self._part_ids(part, val)  # model ids, or rows of /checkpoints
        models = self.ms.models
        if self._checkpoint_rows:
            table = self.ms.checkpoints
            self.model_ids = table["model"].to_numpy()[self.ids]
            self._k = np.searchsorted(self.ms.checkpoint_epochs, table["epoch"].to_numpy()[self.ids])
        else:
            self.model_ids = self.ids
            k = self.ms._checkpoint(epoch)  # validates the epoch
            self._k = None if k is None else np.full(len(self.ids), k)
        archs = models.loc[self.model_ids, "arch"].unique() if len(self.ids) else models["arch"].unique()[:1]
        if len(archs) != 1:
            raise ModelsetError(
                f"split {split!r} part {part!r} spans architectures {list(archs)}; a dataset holds models of one"
            )
        self.arch = str(archs[0])
        self._rows = models.loc[self.model_ids, "row"].to_numpy(np.int64)
        lay = self.ms.layout(self.arch)
        self.tensor_names = list(lay["name"])
        if layout == "nfn":
            pairs = chain(dict(zip(lay["name"], lay["shape"])))
            by = lay.set_index("name")
            self._tensors = [
                (int(by.loc[n, "offset"]), int(by.loc[n, "size"]), tuple(by.loc[n, "shape"])) for p in pairs for n in p
            ]
        self.targets = None if target is None else self._targets(target)
        node = f"architectures/{self.arch}/" + ("params" if self._k is None else "checkpoints")
        self._node, self._chunk = node, self.ms.h5[node].chunks[0]
        self._files = {}  # pid -> h5py.File: a DataLoader worker opens its own handle

    # -- which rows ---------------------------------------------------------------------------
    def _part_ids(self, part: str, val: bool) -> np.ndarray:
        parts = self.ms.split(self.split)
        if part == "all":  # every row the split holds, e.g. for a pass over the whole zoo
            return np.unique(np.concatenate(list(parts.values())))
        if part not in parts and part != "val":
            raise ModelsetError(
                f"split {self.split!r} has no part {part!r}; parts: {', '.join([*parts, 'val', 'all'])}"
            )
        if part not in ("train", "val") or not val:
            if part == "val":
                raise ModelsetError("part 'val' is carved from train; leave val=True to have it")
            return parts[part]
        train = parts["train"]
        rule = {**VAL_RULE, **{k: self.ms.h5["splits"].attrs[k] for k in VAL_RULE if k in self.ms.h5["splits"].attrs}}
        owner = self.ms.checkpoints["model"].to_numpy()[train] if self._checkpoint_rows else train
        held = np.isin(owner, val_models(owner, float(rule["val_fraction"]), int(rule["val_seed"])))
        return train[held] if part == "val" else train[~held]

    def _targets(self, name: str) -> np.ndarray:
        """The protocols' targets (each defined once, in modelset.protocols), or the task id."""
        from .protocols import PROTOCOLS

        if name == "task":
            return self.ms.models.loc[self.model_ids, "task"].to_numpy(np.int64)
        have = ["task"]
        for p in PROTOCOLS.values():
            if p.targets is None or not p.applies(self.ms):
                continue
            on_checkpoints = p.split.rows == "checkpoints"
            if on_checkpoints and not self._checkpoint_rows:
                continue
            ids = self.ids if on_checkpoints else self.model_ids  # a checkpoint row's model properties
            values = p.targets(self.ms, ids)
            if name in values:
                return np.asarray(values[name])
            have += list(values)
        raise ModelsetError(f"unknown target {name!r} for split {self.split!r}; available: {', '.join(have)}")

    # -- reading ------------------------------------------------------------------------------
    def _h5(self):
        pid = os.getpid()
        if pid not in self._files:  # never share an HDF5 handle across a fork
            # The path is opened again, perhaps long after load(): the file there may have been
            # replaced since, so it gets load()'s checks again, and must be the same archive.
            f = open_h5(self.ms.path)
            if any(f.attrs.get(k) != self.ms.h5.attrs.get(k) for k in ("plan_hash", "created")):
                f.close()
                raise ModelsetError(
                    f"{self.ms.path}: another file than the archive this dataset was made from "
                    "(replaced since it was loaded); load it again"
                )
            self._files = {pid: f}
        return self._files[pid][self._node]

    def read(self, index) -> np.ndarray:
        """(b, P) float32 rows of items ``index``, read chunk by chunk: each chunk that holds any of
        them is read once, as one slab of consecutive rows."""
        index = np.asarray(index, dtype=np.int64)
        rows = self._rows[index]
        k = self._k[index] if self._k is not None else np.zeros(len(index), np.int64)
        d = self._h5()
        out = np.empty((len(index), d.shape[-1]), np.float32)
        key = k * (d.shape[0] // self._chunk + 1) + rows // self._chunk
        for group in np.unique(key):
            sel = np.flatnonzero(key == group)
            lo, hi = rows[sel].min(), rows[sel].max() + 1
            slab = d[lo:hi] if self._k is None else d[lo:hi, int(k[sel[0]])]
            out[sel] = slab[rows[sel] - lo]
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, index) -> Batch:
        x = LAYOUTS[self.layout](self.read(index), self)
        if self.targets is None:
            return Batch(x)
        return Batch((x, torch.from_numpy(self.targets[np.asarray(index, dtype=np.int64)])))

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} of {len(self)}")
        return self.__getitems__([i % len(self)])[0]

    def loader(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0, **kw) -> DataLoader:
        """A DataLoader over ``ChunkBatchSampler`` batches, collated by ``collate`` (extra keywords
        go to DataLoader). A plain ``DataLoader(ds, batch_size=...)`` works too, item by item."""
        return DataLoader(
            self,
            batch_sampler=ChunkBatchSampler(self, batch_size, shuffle, seed),
            collate_fn=kw.pop("collate_fn", collate),
            **kw,
        )

    # -- what a metanetwork needs ---------------------------------------------------------------
    @cached_property
    def stats(self) -> pd.DataFrame:
        """Mean and std of every tensor (one value each, over its entries and the models) in the
        training part of this split at this epoch: what a metanetwork's inputs are normalised by.
        Rows in layout order: ``name``, ``mean``, ``std``."""
        train = (
            self
            if self.part == "train"
            else WeightSpaceDataset(self.ms, self.split, "train", None, self.epoch, "flat", self.val)
        )
        lay = self.ms.layout(self.arch)
        s, s2, n = np.zeros(len(lay)), np.zeros(len(lay)), 0
        for batch in ChunkBatchSampler(train, 256):
            rows = train.read(batch).astype(np.float64)
            for j, (off, size) in enumerate(zip(lay["offset"], lay["size"])):
                block = rows[:, off : off + size]
                s[j] += block.sum()
                s2[j] += (block**2).sum()
            n += len(batch)
        count = n * lay["size"].to_numpy()
        mean = s / np.maximum(count, 1)
        return pd.DataFrame(
            {"name": lay["name"], "mean": mean, "std": np.sqrt(np.maximum(s2 / np.maximum(count, 1) - mean**2, 0))}
        )

    @property
    def network_spec(self):
        """nfn's ``NetworkSpec`` of the items (``layout="nfn"``), as ``network_spec_from_wsfeat`` makes it."""
        from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat

        if self.layout != "nfn":
            raise ModelsetError("network_spec describes the nfn layout; make the dataset with layout='nfn'")
        weights, biases = LAYOUTS["nfn"](np.zeros((1, self._h5().shape[-1]), np.float32), self)
        return network_spec_from_wsfeat(WeightSpaceFeatures(weights, biases))

    def __repr__(self):
        return (
            f"<WeightSpaceDataset {self.split}/{self.part}: {len(self)} items of {self.arch}, layout "
            f"{self.layout!r}, target {self.target!r}, epoch {self.epoch!r}>"
        )


class ChunkBatchSampler(Sampler):
    """Batches of a dataset's items in storage order, so that a batch's rows share h5py chunks and
    consecutive batches continue where the last one stopped (each chunk is read about once per
    epoch). ``shuffle`` shuffles the chunks' order each epoch (seeded by ``seed`` and the epoch
    count), and the items within each batch; never single models scattered over the file."""

    def __init__(
        self,
        dataset: WeightSpaceDataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.ds, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            dataset,
            batch_size,
            shuffle,
            seed,
            drop_last,
        )
        self.epoch = 0
        k = dataset._k if dataset._k is not None else np.zeros(len(dataset), np.int64)
        self._order = np.lexsort((dataset._rows, k))  # items by checkpoint, then row
        key = k * (int(dataset._rows.max(initial=0)) // dataset._chunk + 1) + dataset._rows // dataset._chunk
        self._blocks = np.split(self._order, np.flatnonzero(np.diff(key[self._order])) + 1) if len(dataset) else []

    def __iter__(self):
        blocks = self._blocks
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        if self.shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        order = np.concatenate(blocks) if blocks else np.zeros(0, np.int64)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield (rng.permutation(batch) if self.shuffle else batch).tolist()

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
