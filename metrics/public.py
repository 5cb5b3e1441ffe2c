"""The public side of a benchmark: what a method may see, kept apart from the private key.

For each protocol the public part holds the training models with their task labels and the test
models' weights in shuffled order, with no labels, task ids or seeds. The private key maps the
shuffled rows back to model ids and never leaves the scoring process. Only a functional
submission's public file holds the probe batch; a weights-only one holds weights and layout alone.
"""
from __future__ import annotations

import h5py
import numpy as np

from modelset.archive import read_layout, table_to_struct
from modelset.schema import encode_shape

from .views import ModelView, archive_view, probe_batch

# protocol -> (the split, its training part, the parts whose models are tested together)
PROTOCOL_PARTS = {"task_id": ("task_id", "train", ("test",)),
                  "retrieval": ("retrieval", "train", ("query", "gallery")),
                  "cross_family": ("cross_family", "train", ("query", "gallery"))}  # mixed zoos only


def make_public(ms, rng: np.random.Generator, functional: bool = False, data_root=None, protocols=None):
    """({protocol: (train_view, test_view)}, {protocol: test model ids in public row order}), for
    ``protocols`` (default: all the archive has); the views carry the probe only if ``functional``."""
    inputs = probe_batch(ms, data_root) if functional else None
    public, key = {}, {}
    for protocol, (split, train_part, test_parts) in PROTOCOL_PARTS.items():
        if split not in ms.h5["splits"] or (protocols is not None and protocol not in protocols):
            continue
        parts = ms.split(split)
        test_ids = rng.permutation(np.concatenate([parts[p] for p in test_parts]))
        public[protocol] = (archive_view(ms, parts[train_part], True, inputs),
                            archive_view(ms, test_ids, False, inputs))
        key[protocol] = test_ids
    return public, key


def write_public(path, public: dict) -> None:
    with h5py.File(path, "w") as f:
        first = next(iter(public.values()))[0]
        f.attrs.update({"arch": first.arch, "in_channels": first.in_channels, "n_classes": first.n_classes})
        layout = first.layout.assign(shape=[encode_shape(s) for s in first.layout["shape"]])
        f.create_dataset("layout", data=table_to_struct(layout))
        if first.inputs is not None:
            f.create_dataset("probe", data=first.inputs)
        for protocol, (train, test) in public.items():
            for part, view in (("train", train), ("test", test)):
                g = f.create_group(f"{protocol}/{part}")
                g.create_dataset("params", data=view.params)
                g.create_dataset("activation", data=view.activation.astype("S"))
                if view.labels is not None:
                    g.create_dataset("labels", data=view.labels)


def read_public(path) -> dict:
    """{protocol: (train_view, test_view)} from a public file."""
    with h5py.File(path, "r") as f:
        layout = read_layout(f["layout"])
        common = dict(layout=layout, arch=str(f.attrs["arch"]), in_channels=int(f.attrs["in_channels"]),
                      n_classes=int(f.attrs["n_classes"]), inputs=f["probe"][()] if "probe" in f else None)
        out = {}
        for protocol in f:
            if isinstance(f[protocol], h5py.Group):
                views = []
                for part in ("train", "test"):
                    g = f[f"{protocol}/{part}"]
                    views.append(ModelView(params=g["params"][()], activation=g["activation"][()].astype(str),
                                           labels=g["labels"][()] if "labels" in g else None, **common))
                out[protocol] = tuple(views)
    return out

