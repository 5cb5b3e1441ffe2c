"""The evaluators on hand-checked inputs, and their input validation."""

import numpy as np
import pytest

from metrics.protocols import ClusteringEvaluator, RelationEvaluator, RetrievalEvaluator, TaskIdEvaluator
from modelset.errors import ModelsetError


def test_task_id_top1_top5():
    scores = np.array([[0.9, 0.1, 0.0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    r = TaskIdEvaluator().eval({"scores": scores, "y_true": np.array([0, 0, 5])})
    assert r == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(1 / 3)}
    r = TaskIdEvaluator().eval({"scores": scores, "y_true": np.array([0, 1, 4])})
    assert r == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(1.0)}


def test_retrieval_map_and_cmc_by_hand():
    # query 0 (task 0): ranked gallery tasks 1, 0, 0 -> AP = (1/2 + 2/3) / 2; first hit at rank 2.
    # query 1 (task 1): ranked gallery tasks 1, 0, 0 -> AP = 1; first hit at rank 1.
    sim = np.array([[0.9, 0.5, 0.4], [0.9, 0.5, 0.4]])
    r = RetrievalEvaluator().eval(
        {"similarity": sim, "query_labels": np.array([0, 1]), "gallery_labels": np.array([1, 0, 0])}
    )
    assert r["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)
    assert r["cmc1"] == 0.5 and r["cmc5"] == 1.0 and r["cmc10"] == 1.0


def test_relation_fidelity_is_perfect_for_the_relation_itself():
    rel = np.array([[1, 0.5, 0], [0.5, 1, 0.2], [0, 0.2, 1]])
    labels = np.repeat([0, 1, 2], 4)
    sim = rel[labels][:, labels] + 0.001 * np.eye(12)
    r = RelationEvaluator().eval({"similarity": sim, "labels": labels, "relations": rel})
    assert r["spearman"] == pytest.approx(1.0) and r["ndcg10"] == pytest.approx(1.0)
    r = RelationEvaluator().eval({"similarity": -sim, "labels": labels, "relations": rel})
    assert r["spearman"] == pytest.approx(-1.0) and r["ndcg10"] < 0.6


def test_clustering_nmi():
    labels = np.repeat([0, 1, 2], 5)
    sim = (labels[:, None] == labels[None]).astype(float)
    assert ClusteringEvaluator().eval({"similarity": sim, "labels": labels})["nmi"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "evaluator, inputs, message",
    [
        (TaskIdEvaluator(), {"scores": np.array([[np.nan, 1.0]]), "y_true": np.array([0])}, "NaN"),
        (TaskIdEvaluator(), {"scores": np.ones((2, 3)), "y_true": np.array([0])}, "scores has 2 rows"),
        (TaskIdEvaluator(), {"scores": np.ones((1, 3)), "y_true": np.array([3])}, "y_true must index"),
        (TaskIdEvaluator(), {"scores": np.ones((1, 3)), "y_true": np.array([0.5])}, "must hold integers"),
        (TaskIdEvaluator(), {"scores": np.ones(3), "y_true": np.array([0])}, "must be 2-D"),
        (
            RetrievalEvaluator(),
            {"similarity": np.ones((2, 2)), "query_labels": np.array([0, 1]), "gallery_labels": np.array([0, 0])},
            "at least one gallery model",
        ),
        (
            RetrievalEvaluator(),
            {"similarity": np.ones((2, 3)), "query_labels": np.array([0, 1]), "gallery_labels": np.array([0, 1])},
            "queries x gallery",
        ),
        (ClusteringEvaluator(), {"similarity": np.full((2, 2), np.inf), "labels": np.array([0, 1])}, "infinite"),
        (
            RelationEvaluator(),
            {"similarity": np.ones((2, 2)), "labels": np.array([0, 5]), "relations": np.eye(2)},
            "labels must index",
        ),
    ],
)
def test_evaluators_validate_inputs(evaluator, inputs, message):
    with pytest.raises(ModelsetError, match=message):
        evaluator.eval(inputs)
