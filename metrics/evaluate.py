"""Running a method under the contract, checking what it returns, and scoring it with the key."""
from __future__ import annotations

import numpy as np

from modelset.errors import ModelsetError

from .methods import cosine_similarity
from .protocols import ClusteringEvaluator, RelationEvaluator, RetrievalEvaluator, TaskIdEvaluator
from .views import ModelView


class MethodError(ModelsetError):
    """The submitted method failed or returned something unusable."""


def _represent(method, view) -> dict:
    if callable(getattr(method, "embed", None)):
        return {"embedding": np.asarray(method.embed(view))}
    return {"similarity": np.asarray(method.similarity(view))}


def run_method(cls, seed: int, public: dict) -> dict:
    """Outputs of one seed of a method on every protocol's public views (no labels of test models).

    task_id: the method represents training and test models together (train rows first) and, if it
    classifies, scores the test models over its training tasks. retrieval: the test models alone.
    """
    out = {}
    for protocol, (train, test) in public.items():
        method = cls(seed=seed)
        if callable(getattr(method, "fit", None)):
            method.fit(train)
        if protocol == "task_id":
            rep = _represent(method, ModelView.concat(train, test))
            if callable(getattr(method, "predict_scores", None)):
                rep["scores"] = np.asarray(method.predict_scores(test))
                rep["classes"] = np.asarray(getattr(method, "classes_"))
        else:
            rep = _represent(method, test)
        out[protocol] = rep
    return out


def check_outputs(outputs: dict, public: dict) -> dict:
    """Validate a method's outputs; return {protocol: n x n similarity}. Raises MethodError."""
    sims = {}
    for protocol, (train, test) in public.items():
        rep = outputs.get(protocol)
        if rep is None:
            raise MethodError(f"no output for protocol {protocol!r}")
        n = len(train) + len(test) if protocol == "task_id" else len(test)
        if "embedding" in rep:
            e = np.asarray(rep["embedding"])
            if e.ndim != 2 or e.shape[0] != n or e.shape[1] < 1:
                raise MethodError(f"{protocol}: embed() must return shape ({n}, d), got {e.shape}")
            _finite(protocol, "embed()", e)
            sims[protocol] = cosine_similarity(e)
        else:
            s = np.asarray(rep.get("similarity"))
            if s.shape != (n, n):
                raise MethodError(f"{protocol}: similarity() must return shape ({n}, {n}), got {s.shape}")
            _finite(protocol, "similarity()", s)
            sims[protocol] = s.astype(np.float64)
        if "scores" in rep:
            sc, classes = np.asarray(rep["scores"]), np.asarray(rep["classes"])
            if sc.shape != (len(test), len(classes)):
                raise MethodError(f"{protocol}: predict_scores() must return shape ({len(test)}, {len(classes)}), "
                                  f"got {sc.shape}")
            _finite(protocol, "predict_scores()", sc)
    return sims


def _finite(protocol, what, a):
    if a.dtype.kind not in "fiu":
        raise MethodError(f"{protocol}: {what} returned non-numeric values ({a.dtype})")
    if not np.isfinite(a).all():
        raise MethodError(f"{protocol}: {what} returned NaN or infinite values")


def score(outputs: dict, public: dict, key: dict, models, relations: np.ndarray, splits: dict) -> dict:
    """Every protocol's scores, computed with the private key (test model ids per public row)."""
    sims = check_outputs(outputs, public)
    task_of = models["task"].to_numpy()
    result = {}

    train, test = public["task_id"]
    y_test = task_of[key["task_id"]]
    rep = outputs["task_id"]
    if "scores" in rep:  # a learned method classifies
        classes, scores = np.asarray(rep["classes"]), np.asarray(rep["scores"], dtype=np.float64)
    else:  # nearest training model: a task scores as its most similar training model
        classes = np.unique(train.labels)
        block = sims["task_id"][len(train):, : len(train)]
        scores = np.stack([block[:, train.labels == c].max(1) for c in classes], axis=1)
    col = {c: i for i, c in enumerate(classes)}
    if any(t not in col for t in y_test):
        raise MethodError("task_id: classes_ must list every training task")
    result["task_id"] = TaskIdEvaluator().eval({"scores": scores, "y_true": np.array([col[t] for t in y_test])})

    for protocol in ("retrieval", "cross_family"):
        if protocol in key:
            ids = key[protocol]
            sim, labels = sims[protocol], task_of[ids]
            is_query = np.isin(ids, splits[protocol]["query"])
            result[protocol] = RetrievalEvaluator().eval({"similarity": sim[is_query][:, ~is_query],
                                                          "query_labels": labels[is_query],
                                                          "gallery_labels": labels[~is_query]})
    ids = key["retrieval"]
    sim, labels = sims["retrieval"], task_of[ids]
    result["relation"] = RelationEvaluator().eval({"similarity": sim, "labels": labels, "relations": relations})
    result["clustering"] = ClusteringEvaluator().eval({"similarity": sim, "labels": labels})
    return {f"{p}.{k}": v for p, scores_ in result.items() for k, v in scores_.items()}


def default_seeds(learned: bool) -> list[int]:
    """The one default: a learned method is scored over 5 of its own seeds, any other once."""
    return list(range(5)) if learned else [0]


def evaluate(ms, method: str, seeds=None, functional: bool = False, learned: bool = False, data_root=None,
             shuffle_seed: int = 0) -> dict:
    """Score a method in-process on an opened archive: {"seeds", "scores": {metric: [per seed]}}.

    ``method`` and the flags are as for the leaderboard (``methods.submission``), which runs the
    same steps with the method in a sandboxed child.
    """
    from .methods import load_method, submission
    from .public import make_public

    sub = submission(method, functional=functional, learned=learned)
    cls = load_method(sub.spec)
    seeds = list(seeds) if seeds is not None else default_seeds(sub.learned)
    public, key = make_public(ms, np.random.default_rng(shuffle_seed), sub.functional, data_root)
    splits = {p: ms.split(p) for p in key}
    per_seed = [score(run_method(cls, s, public), public, key, ms.models, ms.relations, splits) for s in seeds]
    return {"seeds": seeds, "scores": {k: [r[k] for r in per_seed] for k in per_seed[0]}}
