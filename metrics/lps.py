"""LPS — Learnable Parameter Similarity (Wang et al., 2019), the second-order network.

Following the paper:
- A model is described by second-order (Gram) statistics of its layer weights, chained from layer
  to layer: layer l's weights are multiplied with the chain so far, then the Gram matrix of the
  product is taken. Permuting a layer's filters permutes the rows of its weights and the columns of
  the next layer's weights, which cancels in the product, so the result does not depend on filter
  order.
- A learned head maps these statistics to a task embedding, trained with cross-entropy over the
  training tasks; at test time models are compared by cosine.

Our choices, where the paper leaves room or where we simplify:
- Chain: M_1 = W_1 reshaped to (out_1, in_1*k*k); M_l = S(W_l) @ M_{l-1} with S summing a conv
  kernel over its k x k positions (a linear head enters as is). G_l = M_l^T M_l is then
  (in_1*k*k)^2 for every layer. Biases are not used.
- Each G_l is divided by its trace: ReLU networks are unchanged by rescaling a layer by c > 0 and
  the next by 1/c, and the trace removes that nuisance. Features are the upper triangles of all G_l.
- The classifier layer's chain M_L (classes x in_1*k*k) also enters as is, normalised: its rows
  follow the task's class order, which is meaningful (labels are ordered by class), not a symmetry
  to remove. On digits500 this lifts retrieval mAP from about 0.24 (Grams only) to about 0.35.
- The head is linear (features standardised on the training models -> 64, dropout 0.1) and its
  L2-normalised output feeds a cosine classifier (scale 16) over the training tasks, so training and
  test both compare directions. Adam, 300 full-batch epochs, weight decay 1e-2; an MLP head measured
  worse (it overfits the 30-50 training tasks). The paper's learnable projections inside the
  second-order layers are not reproduced.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .methods import SimilarityMethod


def chained_gram(view, with_class_map: bool = False) -> np.ndarray:
    """(n, F) trace-normalised chained Gram features of every model in the view, optionally
    followed by the normalised class-by-input map of the whole chain."""
    chain = None
    feats = []
    for name in view.weight_names():
        w = torch.from_numpy(view.tensor(name)).double()
        if chain is None:
            chain = w.reshape(len(view), w.shape[1], -1)  # (n, out, in*k*k)
        else:
            s = w.sum(dim=(-2, -1)) if w.ndim == 5 else w  # (n, out, in)
            chain = s @ chain
        g = chain.transpose(1, 2) @ chain  # (n, d0, d0)
        g = g / g.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)[:, None, None]
        iu = torch.triu_indices(g.shape[1], g.shape[2])
        feats.append(g[:, iu[0], iu[1]])
    if with_class_map:
        feats.append(F.normalize(chain.flatten(1), dim=1))
    return torch.cat(feats, dim=1).float().numpy()


class _Head(nn.Module):
    """A linear embedding (after dropout) whose scaled cosine to learned class vectors classifies."""

    def __init__(self, n_in, n_classes, dim, dropout, scale=16.0):
        super().__init__()
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, dim))
        self.classes = nn.Parameter(torch.randn(n_classes, dim) * 0.1)
        self.scale = scale

    def forward(self, x):
        z = F.normalize(self.embed(x), dim=1)
        return z, self.scale * z @ F.normalize(self.classes, dim=1).T


class EmbeddingHead:
    """Standardise features, then learn an embedding whose cosine classifies the training tasks."""

    def __init__(self, seed=0, dim=64, epochs=300, lr=1e-3, weight_decay=1e-4, dropout=0.1):
        self.seed, self.dim, self.epochs = seed, dim, epochs
        self.lr, self.weight_decay, self.dropout = lr, weight_decay, dropout

    def fit(self, x: np.ndarray, labels: np.ndarray):
        self.classes_, y = np.unique(labels, return_inverse=True)
        self.mean_, self.std_ = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - self.mean_) / self.std_).float()
        yt = torch.from_numpy(y).long()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = _Head(x.shape[1], len(self.classes_), self.dim, self.dropout)
            opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            self.net_.train()
            for _ in range(self.epochs):
                loss = F.cross_entropy(self.net_(xt)[1], yt)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net_.eval()
        return self

    @torch.no_grad()
    def transform(self, x: np.ndarray):
        z, logits = self.net_(torch.from_numpy((x - self.mean_) / self.std_).float())
        return z.numpy(), logits.numpy()


class LPS(SimilarityMethod):
    """Chained second-order statistics with a learned task-embedding head."""

    def fit(self, view):
        self.head_ = EmbeddingHead(seed=self.seed, weight_decay=1e-2)
        self.head_.fit(chained_gram(view, with_class_map=True), view.labels)
        self.classes_ = self.head_.classes_
        return self

    def embed(self, view):
        return self.head_.transform(chained_gram(view, with_class_map=True))[0]

    def predict_scores(self, view):
        return self.head_.transform(chained_gram(view, with_class_map=True))[1]
