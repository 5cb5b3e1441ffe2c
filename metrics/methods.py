"""The method contract and the registry of built-in methods.

A similarity method follows scikit-learn's estimator contract:

    method = Method(seed=0, **hyper_parameters)  # __init__ only stores them: get_params, set_params, clone
    method.fit(train_view)          # optional; train_view.labels holds the training models' tasks
    method.embed(view)   -> (n, d)  # compared by cosine
    method.similarity(view) -> (n, n)   # or a similarity matrix directly

What ``fit`` learns ends in ``_``; a method that needs fitting says so in one line when used before
``fit`` (sklearn's NotFittedError); ``embed`` and ``similarity`` change nothing in the method. What a
method claims to be invariant to is declared in ``invariances`` (``HIDDEN_UNITS``: the order of
every hidden layer's units). ``modelset.check_method`` (``metrics.checks``) checks all of this.

A learned method may also classify: ``predict_scores(view) -> (n, len(classes_))`` with
``classes_`` the task ids it was trained on; task identification then uses it instead of the
nearest training model.

The property protocols (test accuracy, generalisation gap, hyper-parameters, epoch, family) score
the same representation with a fixed probe (``metrics.probes``). A method may predict a property
itself instead: the training view's ``targets`` holds each property of the split's training rows,
and ``predict_property(view, target) -> (n,)`` returns its values for the view's rows (class codes
for categorical targets), or None to leave that target to the probe.

What a method is, is said by whoever submits it, never by the class: a method that runs the models
(``view.modules()`` on ``view.probe``) is submitted as functional, and only then do its views carry
the probe inputs; a learned one is scored over 5 seeds by default. Built-ins are recorded in BUILTIN.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from modelset.errors import ModelsetError
from modelset.registry import Registry


@dataclass(frozen=True)
class Builtin:
    spec: str
    learned: bool = False  # trained on the training tasks: scored over 5 seeds by default
    functional: bool = False  # runs the models on the probe inputs


# The scoring side's own record of each built-in's kind: a class's attributes are never asked.
BUILTIN = {
    "raw-cosine": Builtin("metrics.baselines:RawCosine"),
    "raw-euclidean": Builtin("metrics.baselines:RawEuclidean"),
    "weight-stats": Builtin("metrics.baselines:WeightStats"),
    "gram": Builtin("metrics.baselines:ChainedGram"),
    "first-order": Builtin("metrics.baselines:FirstOrderNet", learned=True),
    "lps-fixed": Builtin("metrics.lps:LPSFixed", learned=True),
    "lps": Builtin("metrics.lps:LPS", learned=True),
    "learned-probes": Builtin("metrics.lps:LearnedProbes", learned=True),
    "nfn": Builtin("metrics.equivariant:NFN", learned=True),
    "statnn": Builtin("metrics.statnn:StatNN", learned=True),
    "stats-gbm": Builtin("metrics.properties:StatsGBM"),
    "stats-linear": Builtin("metrics.properties:StatsLinear"),
    "cka": Builtin("metrics.baselines:LinearCKA", functional=True),
    "output-agreement": Builtin("metrics.baselines:OutputAgreement", functional=True),
}
BUILTIN = Registry("method", BUILTIN)  # written as a {name: record} literal, looked up as a registry

# A name that is safe in a file name and a table cell: no separators, no leading dot or dash.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


# An invariance a method may claim: permuting every hidden layer's units (with the next layer's
# inputs) changes nothing in its representation.
HIDDEN_UNITS = "hidden_units"


class SimilarityMethod(BaseEstimator):
    """Base class (optional): a scikit-learn estimator holding the seed; subclasses define embed or
    similarity, and take their hyper-parameters as ``__init__`` arguments stored under their names."""

    invariances: tuple[str, ...] = ()  # what the method claims to be invariant to, e.g. (HIDDEN_UNITS,)

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, view):
        return self


@dataclass(frozen=True)
class Submission:
    """What a result says about a method, decided by the scoring side before the method runs."""

    spec: str  # module:Class or path/to/file.py:Class
    name: str
    learned: bool
    functional: bool

    @property
    def kind(self) -> str:
        return "functional" if self.functional else "weights"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ModelsetError(
            f"leaderboard name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '+' "
            f"or '-', starting with a letter or digit (--name NAME)"
        )
    return name


def submission(method: str, name: str | None = None, functional: bool = False, learned: bool = False) -> Submission:
    """The submission of ``method`` (a built-in name, module:Class or file.py:Class) as the scoring
    side sees it: a built-in's kind comes from BUILTIN; other code is what the flags say it is. The
    name is ``name``, else the built-in's or the class's name from the spec."""
    builtin = method if method in BUILTIN else next((k for k, b in BUILTIN.items() if b.spec == method), None)
    if builtin is not None:
        b = BUILTIN[builtin]
        for flag, given, known in (("--functional", functional, b.functional), ("--learned", learned, b.learned)):
            if given and not known:
                raise ModelsetError(f"{flag}: the built-in method {builtin!r} is not {flag[2:]}; drop {flag}")
        method, functional, learned = b.spec, b.functional, b.learned
    _, cls_name = check_spec(method)
    return Submission(method, check_name(name if name is not None else builtin or cls_name), learned, functional)


def check_spec(spec: str) -> tuple[str, str]:
    """(module or file, class name) of a method spec, checked without importing anything."""
    spec = BUILTIN[spec].spec if spec in BUILTIN else spec
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ModelsetError(
            f"--method {spec!r}: expected a built-in name ({', '.join(BUILTIN)}), module:Class or path/to/file.py:Class"
        )
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
