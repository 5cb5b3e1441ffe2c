"""The reference training loop: one model at a time, plain PyTorch.

Everything random comes from the plan entry: the init from ``init_seed`` (torch's global RNG,
forked so nothing leaks), the minibatch order from ``data_seed`` (a private generator). Where the
data files are (``data_root``) is an argument, never part of the entry: the entry names the dataset
by its content.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from modelset.archs import SmallCNN, create_model, flatten, layout
from modelset.augment import augment
from modelset.datasets import load_dataset, resolve_root
from modelset.errors import ModelsetError
from modelset.families import FAMILIES, effective_state_dict, family_stats, mean_groups
from modelset.schema import CURVES, METRICS
from modelset.tasks import task_arrays

from .plan import PlanEntry, derive_seed


@dataclass
class Checkpoints:
    """A model at its plan entry's checkpoint epochs, in increasing order."""

    params: np.ndarray  # (K, P) float32: effective weights, as ModelResult.params
    metrics: np.ndarray  # (K, 4) float64: schema.METRICS at each epoch (train on the full split, eval mode)
    family_params: np.ndarray | None = None  # (K, Q) float32: the family's own state_dict, flattened


@dataclass
class ModelResult:
    params: np.ndarray  # (P,) float32: effective weights in the dense architecture's layout
    curves: dict  # per-epoch train_loss, train_acc, test_loss, test_acc, groups
    metrics: dict  # final train_loss, train_acc, test_loss, test_acc
    family_params: np.ndarray | None = None  # (Q,) the family's own state_dict, flattened
    family_stats: dict | None = None  # sparsity, groups, gates, parameter count
    checkpoints: Checkpoints | None = None  # None when the entry keeps no checkpoints


class CheckpointRecorder:
    """Collects a model's state and metrics at the checkpoint epochs, for either engine. Recording
    only reads the model (evaluation in eval mode, no gradient, no random draw), so a zoo with
    checkpoints trains to the same weights as one without."""

    def __init__(self, epochs: tuple[int, ...]):
        self.epochs, self.states, self.metrics = set(epochs), [], []

    def wants(self, epoch: int) -> bool:
        return epoch in self.epochs

    def record(self, model, family: str, metrics: dict) -> None:
        self.states.append(model_state(model, family))
        self.metrics.append([metrics[k] for k in METRICS])

    def result(self) -> Checkpoints | None:
        if not self.epochs:
            return None
        own = [f for _, f in self.states]
        return Checkpoints(
            params=np.stack([p for p, _ in self.states]).astype(np.float32),
            metrics=np.array(self.metrics, dtype=np.float64),
            family_params=None if own[0] is None else np.stack(own).astype(np.float32),
        )


def task_tensors(dataset: str, classes: tuple, transform: str, data_root=None):
    """One task's (train x, train y, test x, test y) tensors, input channels and class count."""
    return _task_tensors(dataset, resolve_root(dataset, data_root), tuple(classes), transform)


@lru_cache(maxsize=8)  # keyed by the directory. A unit holds one or two tasks, and a process goes
# through the plan in order, so few entries serve; a 28x28 task is ~66 MiB of float32.
def _task_tensors(dataset: str, root, classes: tuple, transform: str):
    ds = load_dataset(dataset, root)
    out = []
    for split in ("train", "test"):
        x, y = task_arrays(ds, classes, transform, split)
        out += [torch.from_numpy(x), torch.from_numpy(y)]
    return tuple(out), ds.input_shape[0], len(classes)


def model_data(entry: PlanEntry, data_root=None) -> tuple[torch.Tensor, ...]:
    """(train x, train y, test x, test y) of a model: its task's data, the training images cut to
    the model's own fixed random subset when its recipe's ``train_fraction`` is below 1 (drawn from
    its data seed; the subset keeps the images' order)."""
    xtr, ytr, xte, yte = task_tensors(entry.dataset, entry.classes, entry.transform, data_root)[0]
    fraction = entry.hparams.get("train_fraction", 1.0)
    if fraction < 1:
        n = len(ytr)
        rng = np.random.default_rng(derive_seed(entry.data_seed, "train_fraction"))
        keep = torch.from_numpy(np.sort(rng.permutation(n)[: max(1, round(fraction * n))]))
        xtr, ytr = xtr[keep], ytr[keep]
    return xtr, ytr, xte, yte


def dropout_generator(entry: PlanEntry) -> np.random.Generator:
    """Where a model's dropout masks come from: a generator of its own, apart from the data order."""
    return np.random.default_rng(derive_seed(entry.data_seed, "dropout"))


def init_model(entry: PlanEntry, data_root=None):
    _, in_channels, n_classes = task_tensors(entry.dataset, entry.classes, entry.transform, data_root)
    hp = entry.hparams
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.init_seed)
        model = create_model(
            entry.arch,
            in_channels=in_channels,
            n_classes=n_classes,
            activation=hp["activation"],
            init=hp["init"],
            family=entry.family,
            family_options=dict(entry.family_options),
            init_std=hp.get("init_std", 0.0),
        )
    if hp.get("dropout", 0.0):
        if not isinstance(model, SmallCNN):
            raise ModelsetError(f"train.dropout: {entry.arch} takes no dropout; SmallCNN architectures do")
        model.dropout = hp["dropout"]
    return model


def make_optimizer(params, hp: dict):
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    if hp["optimizer"] == "rmsprop":  # torch's defaults: alpha 0.99, eps 1e-8, no momentum
        return torch.optim.RMSprop(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    cls = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=hp["lr"], weight_decay=hp["weight_decay"])


@torch.no_grad()
def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_reference(entry: PlanEntry, device="cpu", data_root=None) -> ModelResult:
    xtr, ytr, xte, yte = (t.to(device) for t in model_data(entry, data_root))
    hp = entry.hparams
    model = init_model(entry, data_root).to(device)  # initialised on the CPU: the same init on every device
    if getattr(model, "dropout", 0.0):
        model.dropout_generator = dropout_generator(entry)
    opt = make_optimizer(model.parameters(), hp)
    gen = torch.Generator().manual_seed(entry.data_seed)
    curves = {k: np.zeros(hp["epochs"], np.float32) for k in CURVES}
    n, bs = len(ytr), hp["batch_size"]
    ckpt = CheckpointRecorder(entry.checkpoints)

    train_metrics = []  # of the last checkpoint: a checkpoint at the last epoch is the final evaluation

    def record(test_loss, test_acc):
        train_metrics[:] = evaluate(model, xtr, ytr)
        train_loss, train_acc = train_metrics
        ckpt.record(
            model,
            entry.family,
            {
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": float(test_loss),
                "test_acc": float(test_acc),
            },
        )

    if ckpt.wants(0):
        record(*evaluate(model, xte, yte))
    for epoch in range(hp["epochs"]):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = correct = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            logits = model(augment(hp["augment"], xtr[idx], gen))
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == ytr[idx]).sum().item()
        curves["train_loss"][epoch], curves["train_acc"][epoch] = loss_sum / n, correct / n
        curves["test_loss"][epoch], curves["test_acc"][epoch] = evaluate(model, xte, yte)
        curves["groups"][epoch] = mean_groups(model)
        if ckpt.wants(epoch + 1):  # the test metrics are the curve's, as stored (float32)
            record(curves["test_loss"][epoch], curves["test_acc"][epoch])
        if hp["lr_step_size"] and (epoch + 1) % hp["lr_step_size"] == 0:  # torch's StepLR, per epoch
            for group in opt.param_groups:
                group["lr"] *= hp["lr_gamma"]
    train_loss, train_acc = train_metrics if ckpt.wants(hp["epochs"]) else evaluate(model, xtr, ytr)
    metrics = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": float(curves["test_loss"][-1]),
        "test_acc": float(curves["test_acc"][-1]),
    }
    return result_of(model, entry.family, curves, metrics, ckpt.result())


def model_state(model, family: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Effective weights in the dense layout, and the family's own state (None for dense)."""
    if not FAMILIES[family].own_params:
        return flatten(model), None
    effective = torch.cat([t.reshape(-1).float().cpu() for t in effective_state_dict(model).values()]).numpy()
    return effective, flatten(model)


def result_of(model, family: str, curves, metrics, checkpoints: Checkpoints | None = None) -> ModelResult:
    """What the archive keeps of a trained model: effective weights, and the family's own state."""
    params, own = model_state(model, family)
    return ModelResult(
        params=params,
        curves=curves,
        metrics=metrics,
        family_params=own,
        family_stats=None if own is None else family_stats(model),
        checkpoints=checkpoints,
    )


def model_layout(entry: PlanEntry, family: str = "dense", data_root=None):
    """Layout rows and architecture attributes for the archive, from an untrained model; for a
    non-dense family, the layout of the family's own parameters."""
    _, in_channels, n_classes = task_tensors(entry.dataset, entry.classes, entry.transform, data_root)
    model = create_model(
        entry.arch,
        in_channels=in_channels,
        n_classes=n_classes,
        family=family,
        family_options=dict(entry.family_options) if family == entry.family else None,
    )
    return layout(model), {"in_channels": in_channels, "n_classes": n_classes}
