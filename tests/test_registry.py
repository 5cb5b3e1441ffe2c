"""One registry idiom: every set of named things answers an unknown name in one line listing the
known ones, and names registered once."""

import subprocess
import sys

import pytest

from metrics.methods import BUILTIN
from metrics.protocols import EVALUATORS
from modelset.archs import ARCHS
from modelset.datasets import DATASETS
from modelset.errors import ModelsetError
from modelset.families import FAMILIES
from modelset.protocols import PROTOCOLS, RANK_BY, SPLITS
from modelset.registry import Registry


@pytest.mark.parametrize(
    "registry, kind, known",
    [
        (ARCHS, "architecture", "small_cnn"),
        (FAMILIES, "family", "dgconv"),
        (DATASETS, "dataset", "fashion-mnist"),
        (SPLITS, "split", "retrieval"),
        (PROTOCOLS, "protocol", "task_id"),
        (EVALUATORS, "evaluator", "RetrievalEvaluator"),
        (BUILTIN, "method", "lps"),
    ],
)
def test_an_unknown_name_is_one_line_listing_the_known_ones(registry, kind, known):
    assert registry.lookup(known) is registry[known]
    with pytest.raises(ModelsetError) as e:
        registry.lookup("no-such-thing")
    msg = str(e.value)
    assert msg.startswith(f"unknown {kind} 'no-such-thing'; available: ") and "\n" not in msg
    assert msg.split("available: ")[1].split(", ") == list(registry)


def test_a_name_is_registered_once():
    reg = Registry("thing", {"a": 1})
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.add(2, "a")
    assert reg == {"a": 1}


def test_every_protocol_names_a_registered_evaluator_and_required_ones_rank_the_board():
    assert all(p.evaluator in EVALUATORS for p in PROTOCOLS.values())
    ranking = [p for p in PROTOCOLS.values() if p.ranks]
    assert ranking and all(p.required for p in ranking)
    assert RANK_BY == [f"{p.name}.{p.headline[0]}" for p in ranking]
    # retrieval ranks a zoo of several tasks; a zoo of one task has none, and accuracy ranks it
    assert RANK_BY[0] == "retrieval.map" and RANK_BY[-1] == "accuracy.kendall"


@pytest.mark.parametrize("module", ["modelset.datasets.torchvision", "modelset.datasets.digits", "modelset.datasets"])
def test_each_dataset_module_imports_on_its_own(module):
    """No import cycle: any module of the package can be the first one imported."""
    code = f"import {module}; from modelset.datasets import list_datasets; print(' '.join(list_datasets()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(DATASETS)
