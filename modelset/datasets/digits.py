"""scikit-learn's digits, shipped inside the package so that modelset works offline."""

from __future__ import annotations

from importlib import resources

import numpy as np

from .base import Dataset, register_dataset


@register_dataset("digits")
def _digits() -> Dataset:
    """scikit-learn's digits (UCI, 1,797 8x8 images, values 0..16).

    The split was drawn once with ``train_test_split(test_size=0.25, stratify=labels,
    random_state=0)`` and is stored in the file, so it can never drift with a library version.
    """
    with resources.files("modelset.data").joinpath("digits.npz").open("rb") as fh:
        z = np.load(fh)
        images, labels, test = z["images"], z["labels"], z["test"]
    x = images.astype(np.float32)[:, None]
    # Zero-mean inputs: with raw 0..16 (or 0..1) pixels the small CNN trains markedly slower and
    # a few models per 500 stall below 85 %.
    mean, std = x[~test].mean(), x[~test].std()
    return Dataset(
        name="digits",
        images=(x - mean) / std,
        labels=labels.astype(np.int64),
        test=test.astype(bool),
        class_names=tuple(str(i) for i in range(10)),
        normalization=f"(pixel - {mean:.6g}) / {std:.6g}: mean and std of the train split's 0..16 pixels",
    )
