"""Evaluators of the benchmark protocols (OGB-style), named by the records in ``modelset.protocols``
and registered in ``EVALUATORS``.

``eval(input_dict)`` validates its inputs (shape, dtype, NaN, range) and returns a dict of scores;
``inputs(case)`` builds that dict from a method's outputs on the protocol's public views and the
private truth (``metrics.evaluate.Case``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import normalized_mutual_info_score, r2_score

from modelset.errors import ModelsetError
from modelset.registry import Registry


def _array(d: dict, key: str, ndim: int, kind: str = "f") -> np.ndarray:
    if key not in d:
        raise ModelsetError(f"missing input {key!r}")
    a = np.asarray(d[key])
    if a.ndim != ndim:
        raise ModelsetError(f"{key} must be {ndim}-D, got shape {a.shape}")
    if kind == "i" and a.dtype.kind not in "iu":
        raise ModelsetError(f"{key} must hold integers, got {a.dtype}")
    if kind == "f":
        if a.dtype.kind not in "fiu":
            raise ModelsetError(f"{key} must be numeric, got {a.dtype}")
        if not np.isfinite(a).all():
            raise ModelsetError(f"{key} holds NaN or infinite values")
    return a


def _ranked(similarity: np.ndarray) -> np.ndarray:
    """Column order by decreasing similarity; ties keep index order, so results are repeatable."""
    return np.argsort(-similarity, axis=1, kind="stable")


class TaskIdEvaluator:
    """Task identification of held-out models: top-1 and top-5 accuracy."""

    def inputs(self, case) -> dict:
        if "scores" in case.outputs:  # a learned method classifies
            classes, scores = np.asarray(case.outputs["classes"]), np.asarray(case.outputs["scores"], np.float64)
        else:  # nearest training model: a task scores as its most similar training model
            labels = case.train.labels
            classes = np.unique(labels)
            block = case.sim[case.n_train :, : case.n_train]
            scores = np.stack([block[:, labels == c].max(1) for c in classes], axis=1)
        col = {c: i for i, c in enumerate(classes)}
        if any(t not in col for t in case.labels):
            raise ModelsetError("task_id: classes_ must list every training task")
        return {"scores": scores, "y_true": np.array([col[t] for t in case.labels])}

    def eval(self, input_dict) -> dict:
        scores = _array(input_dict, "scores", 2)
        y = _array(input_dict, "y_true", 1, "i")
        if len(y) != len(scores):
            raise ModelsetError(f"scores has {len(scores)} rows but y_true has {len(y)}")
        if y.min() < 0 or y.max() >= scores.shape[1]:
            raise ModelsetError(f"y_true must index the {scores.shape[1]} score columns")
        order = _ranked(scores)
        hit_rank = np.argmax(order == y[:, None], axis=1)
        return {"top1": float(np.mean(hit_rank < 1)), "top5": float(np.mean(hit_rank < 5))}


class RetrievalEvaluator:
    """Retrieval of same-task gallery models for each query: mAP and CMC at ranks 1, 5, 10."""

    def inputs(self, case) -> dict:
        is_query = np.isin(case.test_ids, case.parts["query"])
        return {
            "similarity": case.sim[is_query][:, ~is_query],
            "query_labels": case.labels[is_query],
            "gallery_labels": case.labels[~is_query],
        }

    def eval(self, input_dict) -> dict:
        sim = _array(input_dict, "similarity", 2)
        ql = _array(input_dict, "query_labels", 1, "i")
        gl = _array(input_dict, "gallery_labels", 1, "i")
        if sim.shape != (len(ql), len(gl)):
            raise ModelsetError(f"similarity must be ({len(ql)}, {len(gl)}) queries x gallery, got {sim.shape}")
        relevant = gl[_ranked(sim)] == ql[:, None]  # (q, g) relevance in ranked order
        if not relevant.any(axis=1).all():
            raise ModelsetError("every query needs at least one gallery model of its task")
        ranks = np.arange(1, relevant.shape[1] + 1)
        precision = np.cumsum(relevant, axis=1) / ranks
        ap = (precision * relevant).sum(1) / relevant.sum(1)
        first = np.argmax(relevant, axis=1)
        return {"map": float(ap.mean()), **{f"cmc{k}": float(np.mean(first < k)) for k in (1, 5, 10)}}


class RelationEvaluator:
    """Fidelity to the known task relation: Spearman rho between similarity and relation over model
    pairs of different tasks, and nDCG@10 of each model's ranking with relations as graded gains."""

    def inputs(self, case) -> dict:
        return {"similarity": case.sim, "labels": case.labels, "relations": case.relations}

    def eval(self, input_dict) -> dict:
        sim = _array(input_dict, "similarity", 2)
        labels = _array(input_dict, "labels", 1, "i")
        rel = _array(input_dict, "relations", 2)
        n = len(labels)
        if sim.shape != (n, n):
            raise ModelsetError(f"similarity must be ({n}, {n}), got {sim.shape}")
        if labels.min() < 0 or labels.max() >= len(rel):
            raise ModelsetError(f"labels must index the {len(rel)} x {len(rel)} relation matrix")
        gains = rel[labels][:, labels].astype(np.float64)
        iu = np.triu_indices(n, 1)
        differ = labels[iu[0]] != labels[iu[1]]
        x, y = sim[iu][differ], gains[iu][differ]
        # Undefined when either side is constant (e.g. all unseen tasks equally related): report 0.
        rho = spearmanr(x, y).statistic if len(x) > 1 and np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0
        off = ~np.eye(n, dtype=bool)  # a model does not retrieve itself
        s = np.where(off, sim, -np.inf)
        g = np.where(off, gains, 0.0)
        k = min(10, n - 1)
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = (np.take_along_axis(g, _ranked(s)[:, :k], axis=1) * discount).sum(1)
        ideal = (-np.sort(-g, axis=1)[:, :k] * discount).sum(1)
        ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
        return {"spearman": float(rho), "ndcg10": float(ndcg.mean())}


class ClusteringEvaluator:
    """Average-linkage clustering of the similarity into as many clusters as tasks: NMI with the tasks."""

    def inputs(self, case) -> dict:
        return {"similarity": case.sim, "labels": case.labels}

    def eval(self, input_dict) -> dict:
        sim = _array(input_dict, "similarity", 2)
        labels = _array(input_dict, "labels", 1, "i")
        if sim.shape != (len(labels), len(labels)):
            raise ModelsetError(f"similarity must be ({len(labels)}, {len(labels)}), got {sim.shape}")
        sym = (sim + sim.T) / 2
        dist = sym.max() - sym
        np.fill_diagonal(dist, 0)
        k = len(np.unique(labels))
        pred = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(dist)
        return {"nmi": float(normalized_mutual_info_score(labels, pred))}


class RegressionEvaluator:
    """Prediction of a numeric property of held-out rows (test accuracy, epoch): Kendall tau and R^2."""

    def inputs(self, case) -> dict:
        (target,) = case.targets
        return {"y_true": case.truth[target], "y_pred": case.predict(target, "regression")}

    def eval(self, input_dict) -> dict:
        y = _array(input_dict, "y_true", 1)
        p = _array(input_dict, "y_pred", 1)
        if len(p) != len(y):
            raise ModelsetError(f"y_pred has {len(p)} values but y_true has {len(y)}")
        # Kendall tau is undefined for a constant side: report 0 (no ranking recovered).
        tau = kendalltau(y, p).statistic if np.ptp(y) > 0 and np.ptp(p) > 0 else 0.0
        return {"kendall": float(tau), "r2": float(r2_score(y, p))}


class FactorsEvaluator:
    """Prediction of categorical properties of held-out rows (each swept hyper-parameter, the family):
    accuracy per factor, and their mean."""

    def inputs(self, case) -> dict:
        return {
            "y_true": {t: case.truth[t] for t in case.targets},
            "y_pred": {t: case.predict(t, "classification") for t in case.targets},
        }

    def eval(self, input_dict) -> dict:
        true, pred = input_dict.get("y_true"), input_dict.get("y_pred")
        if not isinstance(true, dict) or not isinstance(pred, dict) or set(true) != set(pred) or not true:
            raise ModelsetError("y_true and y_pred must be dicts with the same factor names")
        out = {}
        for name in true:
            y = _array(true, name, 1, "i")
            p = _array(pred, name, 1, "i")
            if len(p) != len(y):
                raise ModelsetError(f"{name}: y_pred has {len(p)} values but y_true has {len(y)}")
            out[name.rpartition(".")[2]] = float(np.mean(y == p))
        return {**out, "mean": float(np.mean(list(out.values())))}


# Each protocol record names its evaluator here (modelset.protocols.Protocol.evaluator).
EVALUATORS: Registry[type] = Registry(
    "evaluator",
    {
        c.__name__: c
        for c in (
            TaskIdEvaluator,
            RetrievalEvaluator,
            RelationEvaluator,
            ClusteringEvaluator,
            RegressionEvaluator,
            FactorsEvaluator,
        )
    },
)
