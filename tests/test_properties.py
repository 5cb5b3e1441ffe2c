"""Built-ins that predict properties themselves (predict_property): stats-gbm and stats-linear
(the Small CNN Zoo's statistics), StatNN and NFN predicting accuracy directly."""

import numpy as np
import pytest

import modelset
from builders.build import build
from metrics.checks import check_method
from metrics.evaluate import run_method
from metrics.methods import BUILTIN, load_method
from metrics.public import make_public
from modelset.preset import load_preset

PREDICTORS = ["stats-gbm", "stats-linear", "statnn", "nfn"]
ONE_TASK = [
    "tasks.classes_per_task=10",
    "tasks.count=1",
    "seeds=60",
    "epochs=2",
    "unit_size=30",
    "optimizer=sgd",
    "sample.lr={loguniform=[0.0003, 1.0]}",
    'sample.activation={choice=["relu", "tanh"]}',
]


@pytest.fixture(scope="module")
def one_task(tmp_path_factory):
    out = tmp_path_factory.mktemp("props") / "props.h5"
    build(load_preset("digits500", ONE_TASK), out, jobs=1, progress=False)
    return out


@pytest.mark.parametrize("name", PREDICTORS)
def test_predictors_pass_check_method(name, one_task, small_archive):
    cls = load_method(BUILTIN[name].spec)
    for archive in (one_task, small_archive):  # numeric and categorical targets; one task and many
        assert check_method(cls, archive) == [], (name, archive)


def test_each_predicts_its_targets_itself(one_task):
    with modelset.load(one_task) as ms:
        public, _ = make_public(ms, np.random.default_rng(0))
    (targets,) = [set(train.targets) for train, _ in public.values()]
    assert {"test_acc", "gap", "hparam.lr", "hparam.activation"} <= targets
    own = {
        name: {
            k[len("predict.") :]
            for k in run_method(load_method(BUILTIN[name].spec), 0, public)["task_id"]
            if k.startswith("predict.")
        }
        for name in PREDICTORS
    }
    assert own["stats-gbm"] == own["stats-linear"] == targets  # categorical ones too
    assert own["statnn"] == {"test_acc", "gap"} and own["nfn"] == {"test_acc"}  # the rest: the probe


def test_gradient_boosting_ranks_accuracy(one_task):
    """The learning rate spans chance to trained: the statistics tell which is which."""
    from scipy.stats import kendalltau

    from metrics.properties import StatsGBM

    with modelset.load(one_task) as ms:
        public, key = make_public(ms, np.random.default_rng(0))
        truth = ms.models.loc[key["task_id"], "test_acc"].to_numpy()
    train, test = public["task_id"]
    # a few dozen training models: leaves of 3 (the default 20 suits zoos of hundreds)
    predicted = StatsGBM(min_samples_leaf=3).fit(train).predict_property(test, "test_acc")
    assert truth.std() > 0.05 and kendalltau(truth, predicted).statistic > 0.4, (truth.std(), predicted)


def test_a_predictor_is_scored_through_the_sandboxed_board_on_every_target(one_task, tmp_path):
    """The scorer reads the run's arrays by name: a target with a dot (``hparam.<key>``) is one of
    them, so its predictions are scored, not refused as an unexpected array."""
    import json

    from .helpers import run_cli

    r = run_cli("leaderboard", "submit", "--archive", one_task, "--method", "stats-linear", "--results", tmp_path)
    assert r.returncode == 0, r.stderr
    (result,) = [json.loads(p.read_text()) for p in tmp_path.glob("stats-linear--*.json")]
    scores = result["scores"]
    assert 0 <= scores["hparams.mean"]["mean"] <= 1 and -1 <= scores["accuracy.kendall"]["mean"] <= 1
