"""The archive's schema in one place: format version, model-table columns, metric and curve names,
and how shapes and checksums are encoded. data/README.md is its prose; the format version moves
with every change here.

Versions: 1, one effective-weight matrix per architecture; 2, families (their own parameters under
``families/<name>``, the DGConv ``groups`` curve, the family columns of ``/models``).
Checkpoints are an addition within v2, present only in archives of presets that keep them: the
root attribute ``checkpoint_epochs``, ``/checkpoints`` and ``checkpoints`` beside every ``params``
matrix. An archive without them is exactly what v2 was before they existed.
"""

from __future__ import annotations

import hashlib

import numpy as np

FORMAT = "modelset"
FORMAT_VERSION = 2

# Final metrics of every model (columns of /models, one value per model in a shard).
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
# Per-epoch curves (/curves/<name>, N x E_max); groups: DGConv's mean group count, else NaN.
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc", "groups")

# /models, in column order; the training recipe's keys (preset [train]) sit between identity and metrics.
IDENTITY_COLUMNS = ("id", "arch", "family", "row", "family_row", "task", "seed", "init_seed", "data_seed")
FAMILY_COLUMNS = ("sparsity", "sparsity_layers", "groups", "gates", "n_family_params")
CHECKSUM_COLUMNS = ("checksum", "family_checksum")


def model_columns(recipe_keys) -> list[str]:
    """Every /models column in order, for a recipe with ``recipe_keys``."""
    return [*IDENTITY_COLUMNS, *recipe_keys, *METRICS, "n_params", *FAMILY_COLUMNS, *CHECKSUM_COLUMNS]


REQUIRED_MODEL_COLUMNS = model_columns(())

# Checkpoints: the root attribute listing their epochs (increasing), and the /checkpoints table,
# K rows per model (by model id, then epoch), with the checksums of the parameter rows.
CHECKPOINT_EPOCHS = "checkpoint_epochs"
CHECKPOINT_COLUMNS = ("model", "epoch", "train_acc", "train_loss", "test_acc", "test_loss")
CHECKPOINT_TABLE_COLUMNS = (*CHECKPOINT_COLUMNS, *CHECKSUM_COLUMNS)


def encode_shape(shape) -> str:
    """A tensor shape as layouts store it: ``"16,1,3,3"`` (``""`` for a scalar)."""
    return ",".join(str(int(d)) for d in shape)


def decode_shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",")) if text else ()


def param_checksum(row: np.ndarray) -> str:
    """sha256 of a parameter row as little-endian float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(row, dtype="<f4").tobytes()).hexdigest()
