"""The method contract and the registry of built-in methods.

A similarity method follows a small scikit-learn-like contract:

    method = Method(seed=0)
    method.fit(train_view)          # optional; train_view.labels holds the training models' tasks
    method.embed(view)   -> (n, d)  # compared by cosine
    method.similarity(view) -> (n, n)   # or a similarity matrix directly

A learned method may also classify: ``predict_scores(view) -> (n, len(classes_))`` with
``classes_`` the task ids it was trained on; task identification then uses it instead of the
nearest training model.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

from modelset.errors import ModelsetError

BUILTIN = {
    "raw-cosine": "metrics.baselines:RawCosine",
    "raw-euclidean": "metrics.baselines:RawEuclidean",
    "weight-stats": "metrics.baselines:WeightStats",
    "gram": "metrics.baselines:ChainedGram",
    "first-order": "metrics.baselines:FirstOrderNet",
    "lps": "metrics.lps:LPS",
    "cka": "metrics.baselines:LinearCKA",
    "output-agreement": "metrics.baselines:OutputAgreement",
}


class SimilarityMethod:
    """Base class (optional): holds the seed; subclasses define embed or similarity."""

    learned = False  # learned methods are scored over several of their own seeds
    functional = False  # runs the models rather than reading only their weights

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, view):
        return self


def check_spec(spec: str) -> tuple[str, str]:
    """(module or file, class name) of a method spec, checked without importing anything."""
    spec = BUILTIN.get(spec, spec)
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ModelsetError(f"--method {spec!r}: expected a built-in name ({', '.join(BUILTIN)}), "
                            f"module:Class or path/to/file.py:Class")
    if target.endswith(".py") and not Path(target).is_file():
        raise ModelsetError(f"--method: file {target!r} not found")
    return target, name


def load_method(spec: str):
    """A method class from a built-in name, ``module:Class`` or ``path/to/file.py:Class``."""
    target, name = check_spec(spec)
    if target.endswith(".py"):
        path = Path(target)
        mod_name = f"_submitted_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ModelsetError(f"--method: cannot import module {target!r}: {e}") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ModelsetError(f"--method: {target!r} has no attribute {name!r}")
    if not (callable(getattr(cls, "embed", None)) or callable(getattr(cls, "similarity", None))):
        raise ModelsetError(f"--method: {name} defines neither embed(view) nor similarity(view)")
    return cls


def cosine_similarity(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T
