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
    xy = TSNE(metric="precomputed", init="random", random_state=seed,
              perplexity=min(30, len(labels) - 1)).fit_transform(dist)
    tasks = np.unique(labels)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(tasks)))
    for c, t in zip(colours, tasks):
        ax.scatter(*xy[labels == t].T, s=18, color=c, label=str(t))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_method(ms, cls, out, seed: int = 0):
    """One PNG for a method on the retrieval test models (unseen tasks): matrix, relations, map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import check_outputs, run_method
    from .public import make_public

    public, key = make_public(ms, np.random.default_rng(0))
    retrieval = {"retrieval": public["retrieval"]}  # the only protocol plotted: run the method on it alone
    sim = check_outputs(run_method(cls, seed, retrieval), retrieval)["retrieval"]
    labels = ms.models.loc[key["retrieval"], "task"].to_numpy()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    plot_similarity(sim, labels, ms.relations, ax=axes[:2], title=f"{cls.__name__} similarity")
    plot_embedding_map(sim, labels, ax=axes[2], seed=seed, title=f"{cls.__name__}: unseen tasks' models")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
