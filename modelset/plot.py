"""Plots for looking rather than reading: the task relation matrix and accuracy spread."""

from __future__ import annotations

import numpy as np


def plot_relations(ms, ax=None):
    """Heatmap of the known task relation matrix, tasks labelled by name."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 6))[1]
    names = ms.tasks["name"].tolist()
    im = ax.imshow(ms.relations, cmap="viridis", vmin=0, vmax=1)
    step = max(1, len(names) // 25)
    ticks = np.arange(0, len(names), step)
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=6)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=6)
    ax.set_title(
        f"task relations ({ms.relations.shape[0]} tasks): {ms.h5['relations'].attrs['definition'].split(':')[0]}"
    )
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_accuracy(ms, ax=None):
    """Test accuracy of every model, grouped by task."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3))[1]
    m = ms.models
    ax.scatter(m["task"], m["test_acc"], s=8, alpha=0.6)
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{len(m)} models: mean {m['test_acc'].mean():.3f}, min {m['test_acc'].min():.3f}")
    return ax
