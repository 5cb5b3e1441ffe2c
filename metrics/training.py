"""Task-embedding training shared by the learned methods (LPS, NFN, StatNN, the first-order net).

An encoder maps a batch of models to features; a linear layer (after dropout) maps them to an
embedding whose L2-normalised direction feeds a cosine classifier (scale 16) over the training
tasks. Everything is trained together with cross-entropy, full batch (a few hundred models fit in
one step), with Adam. Training and test both compare directions, so the embedding is what retrieval
compares by cosine. Seeded: the same seed gives the same weights (``torch.random.fork_rng``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The one hidden-unit permutation (modelset.symmetry), under the name the learned methods use.
from modelset.symmetry import random_permutation as permute_hidden  # noqa: F401


class Standardize(nn.Module):
    """Features centred and scaled by the training models' statistics: those of the last batch
    seen in training mode (the whole training set, after the last step) are used at test time."""

    def __init__(self, n):
        super().__init__()
        self.norm = nn.BatchNorm1d(n, affine=False, momentum=1.0)

    def forward(self, x):
        return self.norm(x)


class TaskEmbedding(nn.Module):
    """encoder -> standardise -> dropout -> linear embedding; scaled cosine to learned task vectors."""

    def __init__(
        self,
        encoder: nn.Module,
        n_features: int,
        n_classes: int,
        dim: int = 64,
        dropout: float = 0.1,
        scale: float = 16.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.embed = nn.Sequential(Standardize(n_features), nn.Dropout(dropout), nn.Linear(n_features, dim))
        self.classes = nn.Parameter(torch.randn(n_classes, dim) * 0.1)
        self.scale = scale

    def forward(self, x):
        z = F.normalize(self.embed(self.encoder(x)), dim=1)
        return z, self.scale * z @ F.normalize(self.classes, dim=1).T


def fit_task_embedding(
    make_encoder,
    x,
    labels: np.ndarray,
    seed: int,
    dim: int = 64,
    epochs: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    dropout: float = 0.1,
    augment=None,
):
    """(trained TaskEmbedding in eval mode, the sorted training task ids).

    ``make_encoder()`` builds the encoder (called under the seed, so its init is seeded too) and
    must expose ``n_features``; ``x`` is whatever it takes (a tensor or a tuple of tensors);
    ``augment(x, generator)``, if given, draws each epoch's training input (e.g. every model with
    its hidden units in a new random order, for an encoder that is not invariant to it).
    """
    classes, y = np.unique(labels, return_inverse=True)
    yt = torch.from_numpy(y).long()
    if len(classes) < 2:  # one task (a zoo of one task): nothing to tell apart, nothing to train
        epochs = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        encoder = make_encoder()
        net = TaskEmbedding(encoder, encoder.n_features, len(classes), dim, dropout)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        net.train()
        for _ in range(epochs):
            loss = F.cross_entropy(net(augment(x, gen) if augment else x)[1], yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # the standardisation's statistics under the final encoder
            net(x)
    return net.eval(), classes


@torch.no_grad()
def transform(net: TaskEmbedding, x):
    """(embedding, task logits) as numpy."""
    z, logits = net(x)
    return z.numpy(), logits.numpy()


class Identity(nn.Module):
    """An encoder for fixed features: passes them on, says how many there are."""

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features

    def forward(self, x):
        return x


class Regressor(nn.Module):
    """encoder -> standardise -> MLP -> one number per model (the standardised target)."""

    def __init__(self, encoder: nn.Module, n_features: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            Standardize(n_features),
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.head(self.encoder(x))[:, 0]


def fit_regressor(make_encoder, x, y: np.ndarray, seed: int, epochs: int = 500, lr: float = 1e-3, weight_decay=1e-4):
    """(trained Regressor in eval mode, target mean, target std): mean squared error on the
    standardised target, full batch, Adam, seeded as ``fit_task_embedding``."""
    y = np.asarray(y, np.float64)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    yt = torch.from_numpy((y - mean) / std).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = make_encoder()
        net = Regressor(encoder, encoder.n_features)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        net.train()
        for _ in range(epochs):
            loss = F.mse_loss(net(x), yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # the standardisation's statistics under the final encoder
            net(x)
    return net.eval(), mean, std


@torch.no_grad()
def regress(fitted, x) -> np.ndarray:
    """A fitted regressor's (net, mean, std) predictions in the target's units."""
    net, mean, std = fitted
    return net(x).double().numpy() * std + mean
