"""The property protocols (accuracy, hyper-parameters, family; epoch in tests/test_checkpoints.py):
evaluators and probes on hand-checked inputs, and the registry end to end on a real small sweep."""

import numpy as np
import pytest

import modelset
from builders.build import build
from metrics.evaluate import MethodError, evaluate, run_method, score
from metrics.probes import similarity_probe
from metrics.protocols import FactorsEvaluator, RegressionEvaluator
from metrics.public import make_public, read_public, write_public
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.protocols import HEADLINE, PROTOCOLS, applicable, required

# 4 tasks x 2 seeds x lr {0.003, 0.03} x {dense, STR}: 32 models, every factor on both sides of a split.
SWEEP = ["seeds=2", "tasks.count=4", "epochs=2", "unit_size=4", "grid.lr=[0.003, 0.03]", 'grid.family=["dense", "str"]']


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.h5"
    build(load_preset("digits500", SWEEP), out, jobs=1, progress=False)
    return out


def test_regression_by_hand():
    # one discordant pair of six: tau = (5 - 1) / 6; R^2 = 1 - (0 + 0 + 1 + 1) / 5
    r = RegressionEvaluator().eval({"y_true": np.array([1.0, 2, 3, 4]), "y_pred": np.array([1.0, 2, 4, 3])})
    assert r == {"kendall": pytest.approx(4 / 6), "r2": pytest.approx(0.6)}
    # a constant prediction recovers no ranking and explains nothing
    r = RegressionEvaluator().eval({"y_true": np.array([1.0, 2, 3, 4]), "y_pred": np.full(4, 2.5)})
    assert r == {"kendall": 0.0, "r2": pytest.approx(0.0)}


def test_factors_by_hand():
    r = FactorsEvaluator().eval(
        {
            "y_true": {"hparam.lr": np.array([0, 1, 1, 0]), "hparam.optimizer": np.array([0, 0, 1, 1])},
            "y_pred": {"hparam.lr": np.array([0, 1, 0, 0]), "hparam.optimizer": np.array([0, 0, 1, 1])},
        }
    )
    assert r == {"lr": 0.75, "optimizer": 1.0, "mean": 0.875}


@pytest.mark.parametrize(
    "evaluator, inputs, message",
    [
        (RegressionEvaluator(), {"y_true": np.ones(3), "y_pred": np.array([1.0, np.nan, 1])}, "NaN"),
        (RegressionEvaluator(), {"y_true": np.ones(3), "y_pred": np.ones(2)}, "y_pred has 2 values"),
        (
            FactorsEvaluator(),
            {"y_true": {"a": np.zeros(2, int)}, "y_pred": {"b": np.zeros(2, int)}},
            "same factor names",
        ),
        (FactorsEvaluator(), {"y_true": {"a": np.zeros(2, int)}, "y_pred": {"a": np.array([0.5, 1])}}, "integers"),
    ],
)
def test_property_evaluators_validate_inputs(evaluator, inputs, message):
    with pytest.raises(ModelsetError, match=message):
        evaluator.eval(inputs)


def test_similarity_probe_by_hand():
    sim = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.9]])
    y = np.array([1, 1, 0])
    assert similarity_probe(sim, y, "classification").tolist() == [1, 1]  # k = 3: all three vote
    assert similarity_probe(sim, np.array([1.0, 2.0, 6.0]), "regression").tolist() == [3.0, 3.0]


class MeanSimilarityEvaluator:
    def inputs(self, case):
        return {"similarity": case.sim}

    def eval(self, input_dict):
        return {"mean": float(np.mean(input_dict["similarity"]))}


def test_a_new_protocol_is_one_record_and_its_evaluator(sweep, monkeypatch):
    import metrics.protocols
    from modelset.protocols import RETRIEVAL, Protocol

    monkeypatch.setitem(metrics.protocols.EVALUATORS, "MeanSimilarityEvaluator", MeanSimilarityEvaluator)
    monkeypatch.setitem(
        PROTOCOLS,
        "mean_similarity",
        Protocol("mean_similarity", RETRIEVAL, "MeanSimilarityEvaluator", ("mean",), "relations"),
    )
    with modelset.load(sweep) as ms:
        public, key = make_public(ms, np.random.default_rng(0))
        s = score(run_method(ConstantGuess, 0, public), public, key, ms)
    # ConstantGuess embeds the first 4 weights of each unseen-task model: their mean cosine
    assert s["mean_similarity.mean"] == pytest.approx(np.mean(_cosine(public["retrieval"][1].params[:, :4])))
    # the properties of held-out models are scored on the task_id split: no extra fit per seed
    assert PROTOCOLS["accuracy"].split is PROTOCOLS["task_id"].split and set(required(50)) <= set(HEADLINE)


def _cosine(x):
    x = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_public_file_holds_training_targets_only(sweep, tmp_path):
    with modelset.load(sweep) as ms:
        assert [p.name for p in applicable(ms)] == [
            "task_id",
            "retrieval",
            "relation",
            "clustering",
            "cross_family",
            "accuracy",
            "gap",
            "hparams",
            "family",
        ]
        public, key = make_public(ms, np.random.default_rng(0))
        write_public(tmp_path / "public.h5", public)
        train, test = read_public(tmp_path / "public.h5")["task_id"]
        ids = ms.split("task_id")["train"]
        assert set(train.targets) == {"test_acc", "gap", "hparam.lr", "family"}
        m = ms.models.loc[ids]
        np.testing.assert_array_equal(train.targets["test_acc"], m["test_acc"])
        np.testing.assert_array_equal(train.targets["gap"], m["train_acc"] - m["test_acc"])
        lr = ms.models.loc[ids, "lr"].to_numpy()
        np.testing.assert_array_equal(train.targets["hparam.lr"], (lr == 0.03).astype(int))
        assert test.targets is None and test.labels is None  # nothing of a test model's properties
        for _, te in read_public(tmp_path / "public.h5").values():
            assert te.targets is None


class ConstantGuess:
    """Predicts every property itself, always the same value."""

    def __init__(self, seed=0):
        pass

    def embed(self, view):
        return view.params[:, :4]

    def predict_property(self, view, target):
        return np.full(len(view), 0.5 if target in ("test_acc", "gap") else 1)


class NanGuess(ConstantGuess):
    def predict_property(self, view, target):
        return np.full(len(view), np.nan)


def test_a_method_that_predicts_is_scored_on_its_predictions(sweep):
    with modelset.load(sweep) as ms:
        public, key = make_public(ms, np.random.default_rng(0))
        s = score(run_method(ConstantGuess, 0, public), public, key, ms)
        test = ms.models.loc[key["task_id"]]
        assert s["hparams.lr"] == pytest.approx(np.mean(test.lr == 0.03))
        assert s["family.family"] == pytest.approx(np.mean(test.family == "str"))  # codes sort: dense, str
        assert s["accuracy.kendall"] == 0.0
        with pytest.raises(MethodError, match="predict_property.*NaN"):
            score(run_method(NanGuess, 0, public), public, key, ms)


def test_builtins_are_scored_by_the_probe_on_a_real_sweep(sweep):
    with modelset.load(sweep) as ms:
        r = evaluate(ms, "weight-stats")["scores"]
        # lr 0.003 vs 0.03 leaves plain marks in per-layer statistics (chance: 0.5)
        assert r["hparams.lr"][0] > 0.75
        assert {"accuracy.kendall", "accuracy.r2", "hparams.mean", "family.mean"} <= set(r)
        sim_only = evaluate(ms, "raw-euclidean")["scores"]  # a similarity: scored by its nearest neighbours
        assert 0.0 <= sim_only["hparams.lr"][0] <= 1.0


def test_the_epoch_protocol_reads_checkpoint_rows_of_the_held_out_seeds(tmp_path):
    out = tmp_path / "ckpt.h5"
    build(
        load_preset(
            "digits500",
            [
                "seeds=2",
                "tasks.count=3",
                "epochs=3",
                "unit_size=3",
                "checkpoints=[0, 1, 3]",
                "splits.epoch_max_rows=10",
            ],
        ),
        out,
        jobs=1,
        progress=False,
    )
    with modelset.load(out) as ms:
        ck, tid, parts = ms.checkpoints, ms.split("task_id"), ms.split("epoch")
        assert len(parts["train"]) == len(parts["test"]) == 9  # 3 tasks x 1 seed x 3 epochs, under the cap
        assert set(ck.loc[parts["test"], "model"]) == set(tid["test"])  # held-out models only
        assert set(ck.loc[parts["train"], "model"]) == set(tid["train"])
        public, key = make_public(ms, np.random.default_rng(0))
        train, test = public["epoch"]
        np.testing.assert_array_equal(train.targets["epoch"], ck.loc[parts["train"], "epoch"])
        assert test.targets is None
        row = key["epoch"][0]
        np.testing.assert_array_equal(
            test.params[0], ms.params([ck.loc[row, "model"]], epoch=int(ck.loc[row, "epoch"]))[0]
        )
        r = evaluate(ms, "weight-stats")["scores"]
        # the init and 3 epochs of Adam differ plainly in the weights' statistics
        assert r["epoch.kendall"][0] > 0.5


def test_a_changed_split_fraction_is_a_new_archive(sweep):
    from builders.build import is_up_to_date
    from builders.plan import make_plan

    assert is_up_to_date(sweep, make_plan(load_preset("digits500", SWEEP)))
    assert not is_up_to_date(sweep, make_plan(load_preset("digits500", [*SWEEP, "splits.task_id_train_fraction=0.5"])))


def test_the_board_shows_the_property_results(sweep, tmp_path):
    from metrics import leaderboard as lb

    result = lb.submit(sweep, method="weight-stats", results_dir=tmp_path)
    assert {"accuracy.kendall", "gap.kendall", "hparams.lr", "family.mean"} <= set(result["scores"])
    board = (tmp_path / "leaderboard.md").read_text()
    relations, properties = board.split("### Properties")
    header = next(line for line in properties.splitlines() if line.startswith("| rank"))
    assert "accuracy.kendall" in header and "hparams.mean" in header and "retrieval.map" not in header
    assert "retrieval.map" in relations and "hparams.mean" not in relations
    assert f"{result['scores']['hparams.mean']['mean']:.3f}" in properties
