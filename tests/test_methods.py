"""Similarity methods: LPS's invariance to filter order, and what each kind of method recovers on
the real digits500 zoo."""

import numpy as np
import pytest
import torch

from metrics.evaluate import evaluate
from metrics.lps import chained_gram
from metrics.methods import BUILTIN
from metrics.views import archive_view, probe_batch

from .helpers import permute_hidden_units


def test_lps_features_ignore_filter_order_raw_weights_do_not(small_archive, opened):
    ms = opened(small_archive)
    view = archive_view(ms, range(4), with_labels=False, inputs=probe_batch(ms))
    permuted = permute_hidden_units(view, np.random.default_rng(0))
    x = torch.from_numpy(view.probe)
    with torch.no_grad():  # the permuted networks compute the same function...
        for a, b in zip(view.modules(), permuted.modules()):
            torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)
    assert not np.allclose(view.params, permuted.params)  # ...with different weight vectors
    np.testing.assert_allclose(
        chained_gram(view, with_class_map=True), chained_gram(permuted, with_class_map=True), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_follows_the_contract(small_archive, name, opened):
    ms = opened(small_archive)
    r = evaluate(ms, name, seeds=[0, 1] if BUILTIN[name].learned else [0])
    assert set(r["scores"]) >= {"task_id.top1", "retrieval.map", "relation.spearman", "clustering.nmi"}
    assert all(np.isfinite(v).all() for v in r["scores"].values())


def test_weights_alone_reveal_less_than_the_function(digits500, opened):
    ms = opened(digits500)
    m = {
        name: np.mean(evaluate(ms, name, seeds=[0])["scores"]["retrieval.map"])
        for name in ["raw-cosine", "gram", "lps", "output-agreement"]
    }
    assert m["raw-cosine"] < 0.15  # near chance: no alignment
    assert m["lps"] > m["gram"] > m["raw-cosine"]  # invariance helps, learning helps more
    assert m["output-agreement"] > 0.9 > m["lps"]  # the functional reference stays ahead


def test_learned_methods_are_seeded(small_archive, opened):
    ms = opened(small_archive)
    a = evaluate(ms, "lps", seeds=[3])["scores"]
    b = evaluate(ms, "lps", seeds=[3])["scores"]
    assert a == b


def test_a_weights_only_view_has_no_probe_and_says_how_to_get_one(small_archive, opened):
    ms = opened(small_archive)
    view = archive_view(ms, range(4), with_labels=False)
    assert view.modules()  # the models can be rebuilt...
    with pytest.raises(AttributeError, match="--functional"):
        _ = view.probe  # ...but there is nothing real to run them on
    with pytest.raises(AttributeError, match="--functional"):
        _ = view.subset([0, 1]).probe
    assert len(archive_view(ms, range(4), False, inputs=probe_batch(ms)).subset([0]).probe) == 256
