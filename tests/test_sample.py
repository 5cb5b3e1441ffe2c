"""Sampled hyper-parameters ([sample]): drawn per model from the build seed, stored as model
columns, in the plan hash, beside [grid]; the hparams protocol bins sampled numbers."""

import json
import math
import tomllib

import numpy as np
import pytest

import modelset
from builders.build import build
from builders.plan import make_plan, work_units
from modelset.errors import ModelsetError
from modelset.preset import load_preset
from modelset.protocols import PROTOCOLS, applicable, sample_bins

SAMPLE = [
    "sample.lr={loguniform=[0.0005, 0.05]}",
    "sample.weight_decay={uniform=[0.0, 0.001]}",
    'sample.optimizer={choice=["sgd", "adam"]}',
]


def _plan(extra=(), seeds=8):
    return make_plan(load_preset("digits500", [f"seeds={seeds}", "tasks.count=2", *SAMPLE, *extra]))


def test_draws_are_per_model_within_bounds_and_repeatable():
    a, b = _plan(), _plan()
    assert a.hash == b.hash and [e.hparams for e in a.entries] == [e.hparams for e in b.entries]
    lrs = np.array([e.hparams["lr"] for e in a.entries])
    assert len(set(lrs)) == len(lrs) and lrs.min() >= 0.0005 and lrs.max() <= 0.05
    assert {e.hparams["optimizer"] for e in a.entries} == {"sgd", "adam"}
    assert all(0 <= e.hparams["weight_decay"] <= 0.001 for e in a.entries)
    # loguniform: the logs spread over the range, not the values
    logs = np.log(lrs)
    assert logs.min() < math.log(0.0005) + 1.5 and logs.max() > math.log(0.05) - 1.5


def test_a_models_draw_depends_only_on_its_task_seed_and_build_seed():
    """Fewer seeds, or another order of the plan, leave the remaining models' draws as they were."""
    few = {
        (e.task, e.seed): e.hparams
        for e in make_plan(load_preset("digits500", ["seeds=[3, 5]", "tasks.count=2", *SAMPLE])).entries
    }
    many = {(e.task, e.seed): e.hparams for e in _plan().entries}
    assert all(many[k] == v for k, v in few.items())
    other = make_plan(load_preset("digits500", ["seeds=8", "tasks.count=2", "seed=1", *SAMPLE]))
    assert [e.hparams["lr"] for e in other.entries] != [e.hparams["lr"] for e in _plan().entries]


def test_the_distribution_enters_the_plan_hash():
    other = make_plan(
        load_preset("digits500", ["seeds=8", "tasks.count=2", *SAMPLE[1:], "sample.lr={loguniform=[0.0005, 0.06]}"])
    )
    assert other.hash != _plan().hash


def test_units_group_models_that_share_a_pass():
    plan = _plan(seeds=16)
    assert [e.id for e in plan.entries] == list(range(len(plan.entries)))
    units = work_units(plan)
    mixed = sum(len({e.hparams["optimizer"] for e in u}) > 1 for u in units)
    assert mixed <= 1, [[e.hparams["optimizer"] for e in u] for u in units]  # only where one group ends


def test_sampling_beside_a_grid():
    plan = _plan(['grid.activation=["relu", "tanh"]'], seeds=3)
    assert len(plan.entries) == 2 * 2 * 3
    by_point = {}
    for e in plan.entries:
        by_point.setdefault((e.task, e.seed), []).append(e.hparams)
    for recipes in by_point.values():  # the grid point's models draw their own values
        assert {r["activation"] for r in recipes} == {"relu", "tanh"}
        assert recipes[0]["lr"] != recipes[1]["lr"]


def test_presets_without_the_new_keys_keep_their_plans_and_text():
    p = load_preset("digits500")
    text = tomllib.loads(p.text)
    assert "sample" not in text and not {"dropout", "init_std", "train_fraction"} & set(text["train"])
    assert set(make_plan(p).entries[0].hparams) == set(p["train"]) - {"dropout", "init_std", "train_fraction"}
    used = load_preset("digits500", ["dropout=0.2"])
    assert tomllib.loads(used.text)["train"]["dropout"] == 0.2 and make_plan(used).entries[0].hparams["dropout"] == 0.2


@pytest.mark.parametrize(
    "setting, message",
    [
        ("sample.lr={gaussian=[0, 1]}", "sample.lr must be one distribution (loguniform, uniform, choice)"),
        ("sample.lr={loguniform=[0.1, 0.01]}", "loguniform needs [low, high] with low < high"),
        ("sample.lr={loguniform=[0, 0.01]}", "loguniform needs low > 0"),
        ("sample.lr={uniform=[-1, 0.01]}", "uniform bounds must be a number > 0"),
        ("sample.lr=0.01", "sample.lr must be one distribution"),
        ("sample.epochs={uniform=[1, 5]}", "epochs takes whole numbers; draw it with choice"),
        ('sample.optimizer={choice=["sgd", "lbfgs"]}', "each choice must be one of"),
        ("sample.optimizer={choice=[]}", "choice needs a non-empty list"),
        ("sample.tasks={choice=[1]}", "sampled keys are [train] keys"),
        ("sample.dropout={uniform=[0, 1.5]}", "uniform bounds must be a number in [0, 1)"),
        ("init=normal", "init_std, which must be > 0"),
    ],
)
def test_bad_distributions_are_one_line_errors(setting, message):
    with pytest.raises(ModelsetError) as e:
        load_preset("digits500", [setting])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_key_in_grid_and_sample_is_refused():
    with pytest.raises(ModelsetError, match="also a \\[grid\\] factor"):
        load_preset("digits500", ["grid.lr=[0.1, 0.01]", "sample.lr={loguniform=[0.001, 0.01]}"])


@pytest.fixture(scope="module")
def sampled_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("sampled") / "sampled.h5"
    preset = load_preset("digits500", ["seeds=6", "tasks.count=3", "epochs=1", "unit_size=6", *SAMPLE])
    build(preset, out, jobs=1, progress=False)
    return out


def test_sampled_values_are_model_columns_and_hparams_targets(sampled_archive):
    with modelset.load(sampled_archive) as ms:
        plan = make_plan(load_preset("digits500", ["seeds=6", "tasks.count=3", "epochs=1", "unit_size=6", *SAMPLE]))
        for e in plan.entries:
            row = ms.models.loc[e.id]
            assert row["lr"] == e.hparams["lr"] and row["optimizer"] == e.hparams["optimizer"]
        bins = sample_bins(ms)
        assert set(bins) == {"lr", "weight_decay"} and json.loads(ms.attrs["sample_bins"]) == bins
        assert np.allclose(bins["lr"], np.geomspace(0.0005, 0.05, 5))
        assert PROTOCOLS["hparams"] in applicable(ms)
        ids = ms.split("task_id")["test"]
        targets = PROTOCOLS["hparams"].targets(ms, ids)
        assert set(targets) == {"hparam.lr", "hparam.weight_decay", "hparam.optimizer"}
        lr = ms.models.loc[ids, "lr"].to_numpy()
        expected = np.searchsorted(np.geomspace(0.0005, 0.05, 5)[1:-1], lr, side="right")
        assert np.array_equal(targets["hparam.lr"], expected) and targets["hparam.lr"].max() <= 3
