"""What a similarity method sees: a ``ModelView`` of some models of one architecture.

A view gives weights (numpy rows in the archive layout, per-tensor arrays, torch state dicts and
runnable modules). Only a functional submission's views carry the probe batch, real inputs to run
the models on; a weights-only method can rebuild the modules but has nothing real to feed them.
Only views of training models carry ``labels`` (task ids); everything else about a model stays hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(eq=False)
class ModelView:
    """``n`` models of one architecture, as a method receives them in ``fit``, ``embed`` and
    ``similarity``.

    In: built by the scorer (``archive_view``); a method never constructs one. Out, for the method:
    ``params`` (n, P) float32 rows in the archive layout, ``tensor(name)`` (n, *shape) per tensor,
    ``weight_names()`` the layers to walk, ``state_dicts()`` torch tensors by name, ``modules()``
    runnable torch modules in eval mode, ``subset(idx)`` and ``concat`` for other views;
    ``labels`` (n,) task ids and ``targets`` {name: (n,)} (the split's properties to predict: test
    accuracy ``test_acc``, ``gap``, ``epoch``, class codes of ``family`` and ``hparam.<key>``) on training
    views only; ``probe`` (m, C, H, W) inputs on a functional submission's views only. Rows are in
    the public file's order: shuffled, for test models.
    """

    params: np.ndarray  # (n, P) float32
    layout: pd.DataFrame  # name, shape, offset, size, trainable
    arch: str
    in_channels: int
    n_classes: int
    activation: np.ndarray  # (n,) str: needed to run the models
    labels: np.ndarray | None = None  # (n,) task ids, training views only
    inputs: np.ndarray | None = None  # (m, C, H, W) float32 probe batch: functional submissions only
    targets: dict | None = None  # {target: (n,)} the split's property targets, training views only

    def __len__(self) -> int:
        return len(self.params)

    @property
    def probe(self) -> np.ndarray:
        """The probe batch shared by every model; absent (AttributeError) from a weights-only view."""
        if self.inputs is None:
            raise AttributeError(
                "this view holds weights only, no probe inputs: a method that runs the models "
                "is submitted as functional (--functional)"
            )
        return self.inputs

    def tensor(self, name: str) -> np.ndarray:
        """One named tensor of every model: (n, *shape)."""
        r = self.layout.set_index("name").loc[name]  # r["shape"]: a Series has its own .shape
        return self.params[:, r["offset"] : r["offset"] + r["size"]].reshape(len(self), *r["shape"])

    def weight_names(self) -> list[str]:
        """Trainable weight tensors (not biases) in layer order: the layers a method walks."""
        return [
            n
            for n, t, s in zip(self.layout["name"], self.layout["trainable"], self.layout["shape"])
            if t and n.endswith("weight") and len(s) >= 2
        ]  # not BatchNorm's per-channel scales

    def state_dicts(self):
        from modelset.archs import unflatten

        rows = list(self.layout[["name", "shape", "offset", "size"]].itertuples(index=False))
        return [unflatten(p, rows) for p in self.params]

    def modules(self):
        """Torch modules of every model, in eval mode (for methods that run the models)."""
        from modelset.archs import create_model

        nets = []
        for act, sd in zip(self.activation, self.state_dicts()):
            net = create_model(self.arch, in_channels=self.in_channels, n_classes=self.n_classes, activation=str(act))
            net.load_state_dict(sd)
            nets.append(net.eval())
        return nets

    def subset(self, idx) -> ModelView:
        idx = np.asarray(idx)
        return ModelView(
            self.params[idx],
            self.layout,
            self.arch,
            self.in_channels,
            self.n_classes,
            self.activation[idx],
            None if self.labels is None else self.labels[idx],
            self.inputs,
            None if self.targets is None else {k: v[idx] for k, v in self.targets.items()},
        )

    @staticmethod
    def concat(a: ModelView, b: ModelView) -> ModelView:
        """Both views' models, unlabelled (used where training and test models are compared)."""
        return ModelView(
            np.concatenate([a.params, b.params]),
            a.layout,
            a.arch,
            a.in_channels,
            a.n_classes,
            np.concatenate([a.activation, b.activation]),
            None,
            a.inputs,
        )


def probe_batch(ms, data_root=None, size: int = 256, seed: int = 0) -> np.ndarray:
    """A fixed batch of base-dataset test inputs (all classes), the same for every method.

    File-based datasets are read from ``data_root`` (else $MODELSET_DATA), and must be the data the
    archive's models saw: ``Archive.dataset`` checks the fingerprint.
    """
    ds = ms.dataset(data_root)
    idx = np.flatnonzero(ds.test)
    pick = np.sort(np.random.default_rng(seed).choice(idx, size=min(size, len(idx)), replace=False))
    return ds.images[pick]


def _checkpoint_params(ms, models: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    out = None
    for e in np.unique(epochs):
        at = epochs == e
        p = ms.params(models[at], epoch=int(e))
        out = np.empty((len(models), p.shape[1]), p.dtype) if out is None else out
        out[at] = p
    return out


def row_models(ms, rows: str, ids) -> np.ndarray:
    """The model ids of a split's rows: the ids themselves, or the models that checkpoint rows
    (``rows="checkpoints"``) belong to."""
    ids = np.asarray(ids, dtype=np.int64)
    return ms.checkpoints["model"].to_numpy()[ids] if rows == "checkpoints" else ids


def archive_view(
    ms, ids, with_labels: bool, inputs: np.ndarray | None = None, rows: str = "models", targets: dict | None = None
) -> ModelView:
    """A view of the given rows of an opened archive: model ids, or with ``rows="checkpoints"`` rows
    of its checkpoint table (with probe ``inputs`` for a functional method)."""
    ids = np.asarray(ids, dtype=np.int64)
    models = row_models(ms, rows, ids)
    if rows == "checkpoints":
        params = _checkpoint_params(ms, models, ms.checkpoints["epoch"].to_numpy()[ids])
    else:
        params = ms.params(ids)
    m = ms.models.loc[models]
    arch = m["arch"].iloc[0]
    attrs = ms.h5[f"architectures/{arch}"].attrs
    return ModelView(
        params=params,
        layout=ms.layout(arch),
        arch=arch,
        in_channels=int(attrs["in_channels"]),
        n_classes=int(attrs["n_classes"]),
        activation=m["activation"].to_numpy().astype(str),
        labels=m["task"].to_numpy() if with_labels else None,
        inputs=inputs,
        targets=targets if with_labels else None,
    )
