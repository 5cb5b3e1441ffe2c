"""The public side of a benchmark: what a method may see, kept apart from the private key.

For each split that a protocol of the archive reads (``modelset.protocols``), the public part holds
the training rows with their task labels and the targets of the split's property protocols, and
the test rows' weights in shuffled order, with no labels, targets, task ids or seeds. The private
key maps the shuffled rows back to their ids and never leaves the scoring process. Only a
functional submission's public file holds the probe batch; a weights-only one holds weights and
layout alone.
"""

from __future__ import annotations

import h5py
import numpy as np

from modelset.archive import read_layout, table_to_struct
from modelset.protocols import applicable, split_targets
from modelset.schema import encode_shape

from .views import ModelView, archive_view, probe_batch


def make_public(ms, rng: np.random.Generator, functional: bool = False, data_root=None, splits=None):
    """({split: (train_view, test_view)}, {split: test row ids in public row order}) for every split
    a protocol of the archive reads (or only those named in ``splits``); the views carry the probe
    only if ``functional``."""
    inputs = probe_batch(ms, data_root) if functional else None
    protocols = applicable(ms, splits)
    public, key = {}, {}
    for split in dict.fromkeys(p.split for p in protocols):  # registry order: the shuffles are fixed
        parts = ms.split(split.name)
        test_ids = rng.permutation(np.concatenate([parts[p] for p in split.test]))
        train_ids = parts[split.train]
        public[split.name] = (
            archive_view(ms, train_ids, True, inputs, split.rows, split_targets(ms, split, train_ids, protocols)),
            archive_view(ms, test_ids, False, inputs, split.rows),
        )
        key[split.name] = test_ids
    return public, key


def write_public(path, public: dict) -> None:
    with h5py.File(path, "w") as f:
        first = next(iter(public.values()))[0]
        f.attrs.update({"arch": first.arch, "in_channels": first.in_channels, "n_classes": first.n_classes})
        layout = first.layout.assign(shape=[encode_shape(s) for s in first.layout["shape"]])
        f.create_dataset("layout", data=table_to_struct(layout))
        if first.inputs is not None:
            f.create_dataset("probe", data=first.inputs)
        for split, (train, test) in public.items():
            for part, view in (("train", train), ("test", test)):
                g = f.create_group(f"{split}/{part}")
                g.create_dataset("params", data=view.params)
                g.create_dataset("activation", data=view.activation.astype("S"))
                if view.labels is not None:
                    g.create_dataset("labels", data=view.labels)
                for name, values in (view.targets or {}).items():
                    g.create_dataset(f"targets/{name}", data=values)


def read_public(path) -> dict:
    """{split: (train_view, test_view)} from a public file."""
    with h5py.File(path, "r") as f:
        layout = read_layout(f["layout"])
        common = dict(
            layout=layout,
            arch=str(f.attrs["arch"]),
            in_channels=int(f.attrs["in_channels"]),
            n_classes=int(f.attrs["n_classes"]),
            inputs=f["probe"][()] if "probe" in f else None,
        )
        out = {}
        for split in f:
            if isinstance(f[split], h5py.Group):
                views = []
                for part in ("train", "test"):
                    g = f[f"{split}/{part}"]
                    targets = {k: v[()] for k, v in g["targets"].items()} if "targets" in g else None
                    views.append(
                        ModelView(
                            params=g["params"][()],
                            activation=g["activation"][()].astype(str),
                            labels=g["labels"][()] if "labels" in g else None,
                            targets=targets,
                            **common,
                        )
                    )
                out[split] = tuple(views)
    return out
