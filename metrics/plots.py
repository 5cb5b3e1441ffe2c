"""Plots of a method's view of the test models: its similarity matrix beside the known relations,
and a 2-D map of the models coloured by task."""

from __future__ import annotations

import numpy as np


def plot_similarity(similarity, labels, relations, ax=None, title="similarity"):
    """Model x model similarity (sorted by task) beside the relation of the models' tasks."""
    import matplotlib.pyplot as plt

    axes = ax if ax is not None else plt.subplots(1, 2, figsize=(11, 5))[1]
    order = np.argsort(labels, kind="stable")
    panels = [(similarity[order][:, order], title), (relations[labels[order]][:, labels[order]], "known task relation")]
    for a, (mat, name) in zip(axes, panels):
        im = a.imshow(mat, cmap="viridis", interpolation="nearest")
        a.set_title(name)
        a.set_xlabel("model (sorted by task)")
        a.figure.colorbar(im, ax=a, fraction=0.046)
    return axes


def plot_embedding_map(similarity, labels, ax=None, seed=0, title="models by task"):
    """t-SNE of the models from the method's similarity, one colour per task."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    ax = ax if ax is not None else plt.subplots(figsize=(6, 5))[1]
    dist = similarity.max() - (similarity + similarity.T) / 2
    np.fill_diagonal(dist, 0)
    xy = TSNE(
        metric="precomputed", init="random", random_state=seed, perplexity=min(30, len(labels) - 1)
    ).fit_transform(dist)
    tasks = np.unique(labels)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(tasks)))
    for c, t in zip(colours, tasks):
        ax.scatter(*xy[labels == t].T, s=18, color=c, label=str(t))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_method(similarity, labels, relations, name: str, out) -> None:
    """One PNG of a method's similarity over the retrieval test models (unseen tasks): the matrix,
    the relations of the models' tasks, and a map by task. ``labels``: each model's task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    plot_similarity(similarity, labels, relations, ax=axes[:2], title=f"{name} similarity")
    plot_embedding_map(similarity, labels, ax=axes[2], title=f"{name}: unseen tasks' models")
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
