import pytest

from builders.plan import make_plan, unit_hash, work_units
from modelset.errors import ModelsetError
from modelset.preset import list_presets, load_preset


def test_digits500_plan_is_50_tasks_by_10_seeds():
    preset = load_preset("digits500")
    plan = make_plan(preset)
    assert len(plan.tasks) == 50 and len(plan.entries) == 500
    assert {e.seed for e in plan.entries} == set(range(10))
    assert {len(e.classes) for e in plan.entries} == {3}
    assert not preset["grid"]
    assert "digits500" in list_presets()


def test_models_of_one_task_differ_only_by_seed():
    plan = make_plan(load_preset("digits500"))
    task0 = [e for e in plan.entries if e.task == 0]
    assert len({(e.arch, e.family, e.train, e.classes) for e in task0}) == 1
    assert len({e.init_seed for e in task0}) == len({e.data_seed for e in task0}) == 10
    assert len({e.init_seed for e in plan.entries}) == 500


def test_overrides_resolve_bare_and_dotted_keys():
    p = load_preset("digits500", ["seeds=2", "epochs=5", "train.optimizer=sgd", "tasks.count=4"])
    assert p["seeds"] == 2 and p["train"]["epochs"] == 5 and p["train"]["optimizer"] == "sgd"
    assert len(make_plan(p).entries) == 8
    assert 'optimizer = "sgd"' in p.text  # the resolved preset is what the archive records


def test_grid_sweeps_hyperparameters_with_shared_inits():
    p = load_preset(
        "digits500", ["seeds=2", "tasks.count=3", "grid.lr=[0.001, 0.01]", "grid.activation=['relu', 'tanh']"]
    )
    plan = make_plan(p)
    assert len(plan.entries) == 3 * 4 * 2
    task0_seed0 = [e for e in plan.entries if e.task == 0 and e.seed == 0]
    assert {(e.hparams["lr"], e.hparams["activation"]) for e in task0_seed0} == {
        (0.001, "relu"),
        (0.001, "tanh"),
        (0.01, "relu"),
        (0.01, "tanh"),
    }
    assert len({e.init_seed for e in task0_seed0}) == 1  # grid points are controlled comparisons


def test_preset_file_and_work_units(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\nseeds = [3, 7]\nunit_size = 3\n[tasks]\nclasses = [[0, 1], [2, 3], [4, 5]]\n')
    plan = make_plan(load_preset(str(f)))
    assert [e.seed for e in plan.entries[:2]] == [3, 7]
    units = work_units(plan)
    assert [len(u) for u in units] == [3, 3]
    assert len({unit_hash(u) for u in units}) == 2


def test_changed_recipe_changes_unit_hash():
    a = work_units(make_plan(load_preset("digits500", ["seeds=2", "tasks.count=2"])))
    b = work_units(make_plan(load_preset("digits500", ["seeds=2", "tasks.count=2", "lr=0.01"])))
    assert [len(u) for u in a] == [len(u) for u in b]
    assert not {unit_hash(u) for u in a} & {unit_hash(u) for u in b}


@pytest.mark.parametrize(
    "args, message",
    [
        (("nope",), "unknown preset 'nope'"),
        (("digits500", ["seeds=0"]), "seeds must be a count >= 1"),
        (("digits500", ["bogus=1"]), "unknown key 'bogus'"),
        (("digits500", ["lr=-1"]), "train.lr must be a number > 0"),
        (("digits500", ["optimizer=lbfgs"]), "train.optimizer must be one of"),
        (("digits500", ["seeds"]), "expected key=value"),
        (("digits500", ["grid.tasks=[1]"]), "grid factors are [train] keys"),
        (("digits500", ["splits.task_id_train_fraction=1.5"]), "must be a fraction in (0, 1)"),
    ],
)
def test_bad_presets_are_clear_errors(args, message):
    with pytest.raises(ModelsetError) as e:
        load_preset(*args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_malformed_toml_and_unknown_file_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ModelsetError, match="malformed TOML"):
        load_preset(str(bad))
    bad.write_text("colour = 'red'\n")
    with pytest.raises(ModelsetError, match="unknown key 'colour'"):
        load_preset(str(bad))


def test_class_outside_dataset_is_rejected_at_planning():
    p = load_preset("digits500", ["tasks.classes=[[0, 1, 10]]"])
    with pytest.raises(ModelsetError, match="class 10 is not in dataset 'digits'"):
        make_plan(p)


def test_a_family_table_in_a_preset_file_keeps_the_family_defaults(tmp_path):
    """A file's [families.dgconv] setting one key sets it over the defaults, as --set does."""
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\ndataset = "digits"\nfamily = "dgconv"\n[families.dgconv]\ngate_mean = 1.0\n')
    from_file = load_preset(str(path))["families"]["dgconv"]
    from_set = load_preset("digits500", ["family=dgconv", "families.dgconv.gate_mean=1.0"])["families"]["dgconv"]
    assert from_file == from_set == {"gate_mean": 1.0, "gate_std": 1.0}
