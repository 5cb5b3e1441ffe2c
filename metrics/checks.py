"""``check_method``: what a method author runs before submitting, the counterpart of scikit-learn's
``check_estimator``. It runs the method on a few real models of an archive, as the scorer does, and
returns one line per broken promise of the contract (``metrics.methods``):

- construction: ``cls(seed=...)`` works, ``get_params`` / ``set_params`` exist and ``sklearn.base.clone``
  gives back the same hyper-parameters; ``__init__`` stores no fitted state;
- fitted state: ``fit`` returns the method, sets only attributes ending in ``_`` and leaves the
  hyper-parameters alone; a method whose ``fit`` sets such state raises sklearn's NotFittedError, in
  one line, when used before ``fit``;
- shapes: ``embed`` (n, d) or ``similarity`` (n, n), ``predict_scores`` (n, len(classes_)),
  ``predict_property`` (n,), all finite numbers;
- unchanged state: ``embed``, ``similarity`` and the predictions leave the fitted method as it was;
- determinism: two fits under the same seed give the same outputs, whatever the global random state;
- invariance, where the method claims it in ``invariances``: ``HIDDEN_UNITS``, the same output when
  every hidden layer's units are permuted (the same functions, other weight vectors).

    python -m metrics.checks path/to/method.py:Class [--archive data/digits500.h5] [--functional]
"""

from __future__ import annotations

import copy
import pickle
import random
import re
import warnings

import numpy as np

from .methods import HIDDEN_UNITS

DEFAULT_ARCHIVE = "data/digits500.h5"  # what `make modelset` builds
TOLERANCE = dict(rtol=1e-3, atol=1e-4)  # the same functions in float32, summed in another order


def check_method(
    cls,
    archive=DEFAULT_ARCHIVE,
    functional: bool = False,
    seed: int = 0,
    n_train: int = 40,
    n_test: int = 12,
    data_root=None,
) -> list[str]:
    """Problems of the method class ``cls`` under the contract, one line each; empty if it passes.

    ``archive`` is a path or an opened archive; the method sees ``n_train`` labelled training models
    and ``n_test`` others of its retrieval split, with the probe inputs if ``functional``."""
    import modelset

    if hasattr(archive, "h5"):
        train, test = _views(cls, archive, functional, n_train, n_test, data_root)
    else:
        with modelset.load(archive) as ms:
            train, test = _views(cls, ms, functional, n_train, n_test, data_root)
    try:
        method = cls(seed=seed)
    except Exception as e:
        return [f"{cls.__name__}(seed={seed}) raised {_one_line(e)}"]
    problems = _construction(method)
    fitted, fit_problems = _fit(cls, seed, train)
    problems += fit_problems
    if fitted is None:
        return problems
    problems += _unfitted(cls, seed, fitted, test)
    problems += _shapes_and_state(fitted, train, test)
    problems += _determinism(cls, seed, fitted, train, test)
    problems += _invariances(cls, fitted, test)
    return problems


def _views(cls, ms, functional, n_train, n_test, data_root):
    from .public import make_public

    # Retrieval's views; a property predictor's, and any method's on a zoo of one task, are the
    # task_id split's, whose training view carries the property targets.
    split = (
        "task_id"
        if callable(getattr(cls, "predict_property", None)) or "retrieval" not in ms.h5["splits"]
        else "retrieval"
    )
    public, _ = make_public(ms, np.random.default_rng(0), functional, data_root, splits={split})
    train, test = public[split]
    return train.subset(np.arange(min(n_train, len(train)))), test.subset(np.arange(min(n_test, len(test))))


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _fitted_names(method) -> set[str]:
    return {k for k in vars(method) if k.endswith("_") and not k.startswith("__")}


def _construction(method) -> list[str]:
    from sklearn.base import clone

    name = type(method).__name__
    if not callable(getattr(method, "get_params", None)) or not callable(getattr(method, "set_params", None)):
        return [
            f"{name} has no get_params/set_params: inherit metrics.methods.SimilarityMethod "
            f"(a sklearn BaseEstimator) and take hyper-parameters as __init__ arguments"
        ]
    problems = []
    if _fitted_names(method):
        problems.append(
            f"{name}.__init__ sets fitted state {sorted(_fitted_names(method))}: only fit sets attributes ending in '_'"
        )
    try:
        params = method.get_params()
        copied = clone(method)
        copied.set_params(**params)
        where = _diff(params, copied.get_params(), "params")
        if where:
            problems.append(f"clone({name}) does not give back its hyper-parameters: {where} differs")
    except Exception as e:
        problems.append(f"clone({name}) fails: {_one_line(e)} (store every __init__ argument under its own name)")
    return problems


def _fit(cls, seed, train):
    method = cls(seed=seed)
    if not callable(getattr(method, "fit", None)):
        return method, []
    before = dict(vars(method))
    try:
        returned = method.fit(train)
    except Exception as e:
        return None, [f"fit(view) raised {_one_line(e)}"]
    problems = [] if returned is method else [f"fit returned {type(returned).__name__}, not the method itself"]
    try:
        params = set(method.get_params())
    except Exception:  # no get_params, or a broken one: said by the construction check
        params = set()
    for k, v in vars(method).items():
        if k in before and k in params and _diff(before[k], v, k):
            problems.append(f"fit changed the hyper-parameter {k!r}: store fitted state in attributes ending in '_'")
        elif k not in before and not k.endswith("_") and not k.startswith("_"):
            problems.append(f"fit set {k!r}: fitted state ends in '_' ({k}_)")
    return method, problems


def _represent(method, view):
    """('embed' or 'similarity', its output as an array)."""
    if callable(getattr(method, "embed", None)):
        return "embed", np.asarray(method.embed(view))
    return "similarity", np.asarray(method.similarity(view))


def _unfitted(cls, seed, fitted, test) -> list[str]:
    from sklearn.exceptions import NotFittedError

    if not _fitted_names(fitted):
        return []  # fit learns nothing: the method may be used without it
    fresh = cls(seed=seed)
    try:
        what, _ = _represent(fresh, test)
    except NotFittedError as e:
        return [] if "\n" not in str(e).strip() else ["the NotFittedError before fit is more than one line"]
    except Exception as e:
        return [
            f"used before fit, it raised {_one_line(e)}: raise sklearn's NotFittedError "
            f"(sklearn.utils.validation.check_is_fitted(self))"
        ]
    return [
        f"{what}(view) before fit returned a result, but fit sets {sorted(_fitted_names(fitted))}: "
        f"raise sklearn's NotFittedError (check_is_fitted(self))"
    ]


def _calls(method, train, test):
    """(name, call) of every output the scorer asks a fitted method for."""
    calls = [
        (f"{n}(view)", getattr(method, n))
        for n in ("embed", "similarity", "predict_scores")
        if callable(getattr(method, n, None))
    ]
    if callable(getattr(method, "predict_property", None)):
        calls += [
            (f"predict_property(view, {t!r})", lambda v, t=t: method.predict_property(v, t))
            for t in train.targets or {}
        ]
    return calls


def _shapes_and_state(method, train, test) -> list[str]:
    n, problems = len(test), []
    if not any(callable(getattr(method, k, None)) for k in ("embed", "similarity")):
        return ["defines neither embed(view) nor similarity(view)"]
    for name, call in _calls(method, train, test):
        try:
            before = copy.deepcopy(method)
        except Exception as e:
            problems.append(f"the fitted method cannot be deep-copied, so its state cannot be checked: {_one_line(e)}")
            before = None
        try:
            out = call(test)
        except Exception as e:
            problems.append(f"{name} raised {_one_line(e)}")
            continue
        if out is None and name.startswith("predict_property"):
            continue  # the target is left to the probe
        out = np.asarray(out)
        # both sides deep-copied: a copy may differ from its original (einops' layers come back in training mode)
        where = _diff(before, copy.deepcopy(method), type(method).__name__) if before is not None else None
        if where:
            problems.append(
                f"{name} changed the fitted method: {where} (embed and predictions must leave it as fit did)"
            )
        classes = np.asarray(getattr(method, "classes_", ()))
        if name == "predict_scores(view)" and not len(classes):
            problems.append("predict_scores(view) needs classes_, the training task ids its columns score")
            continue
        expected = {"embed(view)": None, "similarity(view)": (n, n), "predict_scores(view)": (n, len(classes))}.get(
            name, (n,)
        )
        if expected is None and not (out.ndim == 2 and out.shape[0] == n and out.shape[1] >= 1):
            problems.append(f"embed(view) of {n} models must return shape ({n}, d), got {out.shape}")
        elif expected is not None and out.shape != expected:
            problems.append(f"{name} of {n} models must return shape {expected}, got {out.shape}")
        elif out.dtype.kind not in "fiu" or not np.isfinite(out).all():
            problems.append(f"{name} returned non-finite or non-numeric values ({out.dtype})")
    return problems


def _determinism(cls, seed, fitted, train, test) -> list[str]:
    import torch

    # another global random state (restored after): a seeded method does not depend on it
    states = random.getstate(), np.random.get_state()
    random.seed(seed + 1)
    np.random.seed(seed + 1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            again = cls(seed=seed)
            if callable(getattr(again, "fit", None)):
                again.fit(train)
            pairs = [
                (name, np.asarray(call(test), dtype=float), np.asarray(other(test), dtype=float))
                for (name, call), (_, other) in zip(_calls(fitted, train, test), _calls(again, train, test))
            ]
    except Exception as e:
        return [f"a second fit under seed {seed} raised {_one_line(e)}"]
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    return [
        f"{name} differs between two fits under seed {seed} (up to {_gap(a, b):.3g}): seed every random "
        f"draw from self.seed"
        for name, a, b in pairs
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True)
    ]


def _gap(a, b) -> float:
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def _invariances(cls, method, test) -> list[str]:
    claims = tuple(getattr(cls, "invariances", ()))
    problems = [f"invariances: unknown {c!r} (known: {HIDDEN_UNITS!r})" for c in claims if c != HIDDEN_UNITS]
    if HIDDEN_UNITS not in claims:
        return problems
    from modelset.errors import ModelsetError

    try:
        permuted = permute_hidden_units(test, seed=0)
    except ModelsetError as e:
        warnings.warn(f"hidden-unit invariance not checked: {_one_line(e)}", stacklevel=3)
        return problems
    try:
        (what, a), (_, b) = _represent(method, test), _represent(method, permuted)
    except Exception as e:
        return problems + [f"on permuted hidden units, it raised {_one_line(e)}"]
    if a.shape != b.shape or not np.allclose(a, b, **TOLERANCE):
        problems.append(
            f"claims invariance to hidden-unit order ({HIDDEN_UNITS!r}), but {what}(view) changes by up "
            f"to {_gap(a, b):.3g} when every hidden layer's units are permuted"
        )
    return problems


def permute_hidden_units(view, seed: int = 0):
    """The view's models with every hidden layer's units in a new random order, with the next
    layer's inputs: the same functions as other weight vectors (a chain of convolutions with biases
    and a linear head; else a ModelsetError)."""
    import torch

    from .lps import layer_tensors
    from .training import permute_hidden
    from .views import ModelView

    weights, biases = layer_tensors(view, "the hidden-unit check")
    pw, pb = permute_hidden(weights, biases, torch.Generator().manual_seed(seed))
    names = [n for w in view.weight_names() for n in (w, w[: -len("weight")] + "bias")]
    tensors = dict(zip(names, [t for pair in zip(pw, pb) for t in pair]))
    params = np.concatenate([tensors[n].flatten(1).numpy() for n in view.layout["name"]], axis=1)
    return ModelView(**{**view.__dict__, "params": params.astype(view.params.dtype)})


def _diff(a, b, path: str, depth: int = 0) -> str | None:
    """Where ``a`` and ``b`` first differ (a path like ``net_.encoder.activations[0]``), or None."""
    import torch

    if depth > 30 or a is b:
        return None
    if type(a) is not type(b):
        return path
    if isinstance(a, torch.Tensor):
        return None if a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) else path
    if isinstance(a, np.random.Generator):  # compared by state: copies of one are not equal objects
        return None if a.bit_generator.state == b.bit_generator.state else path
    if isinstance(a, np.ndarray):
        return None if a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc") else path
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return f"{path} (keys {sorted(map(str, a.keys() ^ b.keys()))})"
        return next((w for k in a if (w := _diff(a[k], b[k], f"{path}[{k!r}]", depth + 1))), None)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return path
        return next((w for i, (x, y) in enumerate(zip(a, b)) if (w := _diff(x, y, f"{path}[{i}]", depth + 1))), None)
    if isinstance(a, torch.nn.Module) or (hasattr(a, "__dict__") and not callable(a)):
        return _attr_path(vars(a), vars(b), path, depth)
    if type(a).__eq__ is object.__eq__:  # equal only to itself (compiled objects): compared by content
        try:
            return None if pickle.dumps(a) == pickle.dumps(b) else path
        except Exception:  # cannot be pickled: taken as unchanged
            return None
    try:
        return None if bool(a == b) else path
    except Exception:  # not comparable: taken as unchanged
        return None


def _attr_path(a: dict, b: dict, path: str, depth: int) -> str | None:
    """The differing attribute of an object, written ``path.attr``."""
    if a.keys() != b.keys():
        return f"{path} (attributes {sorted(a.keys() ^ b.keys())})"
    where = next((w for k in a if (w := _diff(a[k], b[k], f"{path}.{k}", depth + 1))), None)
    # a torch module's parameters, buffers and submodules read as its attributes
    return where and re.sub(r"\._(?:modules|parameters|buffers)\['([^']+)'\]", r".\1", where)


def main(argv=None) -> int:
    import argparse

    from .methods import load_method

    ap = argparse.ArgumentParser(description="Check a similarity method against the contract before submitting.")
    ap.add_argument("method", help="a built-in name, module:Class or path/to/file.py:Class")
    ap.add_argument("--archive", default=DEFAULT_ARCHIVE)
    ap.add_argument("--functional", action="store_true", help="give the views the probe inputs")
    args = ap.parse_args(argv)
    problems = check_method(load_method(args.method), args.archive, functional=args.functional)
    print("\n".join(problems) if problems else "ok: the method follows the contract")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
