"""The learned similarity methods (LPS, NFN, StatNN): invariance to hidden-unit order (against a
control that is not invariant), refusal of an architecture they cannot represent, determinism,
and what they recover on the real digits500 zoo."""

import numpy as np
import pandas as pd
import pytest
import torch

import modelset
from metrics.evaluate import evaluate
from metrics.lps import chain_input, layer_tensors
from metrics.methods import BUILTIN, load_method
from metrics.training import permute_hidden
from metrics.views import ModelView, archive_view, probe_batch
from modelset.archs import create_model, flatten, layout
from modelset.errors import ModelsetError

from .helpers import load_benchmark, permute_hidden_units


@pytest.fixture(scope="module")
def views(small_archive):
    with modelset.load(small_archive) as ms:
        train = archive_view(ms, ms.split("retrieval")["train"], with_labels=True)
        test = archive_view(ms, ms.split("retrieval")["query"], with_labels=False, inputs=probe_batch(ms))
    return train, test


@pytest.mark.parametrize("name", ["lps", "learned-probes", "nfn", "statnn", "first-order"])
def test_learned_embeddings_ignore_hidden_unit_order_the_first_order_net_does_not(views, name):
    train, test = views
    permuted = permute_hidden_units(test, np.random.default_rng(0))
    x = torch.from_numpy(test.probe)
    with torch.no_grad():  # the permuted networks compute the same function...
        for a, b in zip(test.modules(), permuted.modules()):
            torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)
    assert not np.allclose(test.params, permuted.params)  # ...with different weight vectors
    method = load_method(name)(seed=0).fit(train)
    same = np.allclose(method.embed(test), method.embed(permuted), rtol=1e-3, atol=1e-4)
    assert same == (name != "first-order")  # the control sees the permutation


def test_nfn_and_lps_refuse_an_architecture_they_cannot_represent_with_one_line(views):
    net = create_model("vgg4_bn", in_channels=1, n_classes=3)
    rows = pd.DataFrame(layout(net), columns=["name", "shape", "offset", "size", "trainable"])
    view = ModelView(
        params=np.stack([flatten(net)] * 2),
        layout=rows,
        arch="vgg4_bn",
        in_channels=1,
        n_classes=3,
        activation=np.array(["relu"] * 2),
        labels=np.array([0, 1]),
    )
    for name in ("nfn", "lps"):
        with pytest.raises(ModelsetError, match=r"'vgg4_bn'.*blocks\.0\.bn") as e:
            load_method(name)(seed=0).fit(view)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["lps", "nfn", "statnn"])
def test_learned_methods_are_deterministic_per_seed(small_archive, name, opened):
    ms = opened(small_archive)
    assert evaluate(ms, name, seeds=[1])["scores"] == evaluate(ms, name, seeds=[1])["scores"]


def test_learned_methods_recover_tasks_on_digits500(digits500, opened):
    ms = opened(digits500)
    m = {
        name: np.mean(evaluate(ms, name, seeds=[0])["scores"]["retrieval.map"])
        for name in ["lps", "learned-probes", "lps-fixed", "nfn", "statnn", "raw-cosine"]
    }
    assert m["raw-cosine"] < 0.15  # about chance
    assert min(m["nfn"], m["statnn"]) > m["raw-cosine"] + 0.02  # above it
    assert min(m["lps"], m["learned-probes"]) > 0.5 > m["lps-fixed"]  # the learnable layers are what passes 0.5
    assert all(BUILTIN[n].learned for n in ("lps", "learned-probes", "lps-fixed", "nfn", "statnn"))


@pytest.mark.parametrize("name", ["lps", "learned-probes"])
def test_lps_features_are_the_models_own_outputs_on_its_learned_inputs(views, name):
    train, test = views
    method = load_method(name)(seed=0).fit(train)
    chain = method.net_.encoder
    with torch.no_grad():
        feats = chain(chain_input(test))
        probes = chain.probes.detach()
        outs = [net(probes).T for net in test.modules()]  # (classes, r): each model's outputs on the inputs
        ref = torch.stack([torch.nn.functional.normalize(o.flatten(), dim=0) for o in outs])
        grams = [o.T @ o for o in outs]  # LPS's second-order layer: the r x r Gram of the outputs, trace 1
        iu = torch.triu_indices(len(probes), len(probes))
        ref_gram = torch.stack([(g / g.trace())[iu[0], iu[1]] for g in grams])
    if name == "lps":
        torch.testing.assert_close(feats, torch.cat([ref_gram, ref], dim=1), rtol=1e-4, atol=1e-5)
    else:
        torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-5)


def test_the_augmentation_permutes_hidden_units_and_keeps_every_function(views):
    _, test = views
    weights, biases = layer_tensors(test)
    pw, pb = permute_hidden(weights, biases, torch.Generator().manual_seed(0))
    names = [n for w in test.weight_names() for n in (w, w[: -len("weight")] + "bias")]
    tensors = dict(zip(names, [t for pair in zip(pw, pb) for t in pair]))
    params = np.concatenate([tensors[n].flatten(1).numpy() for n in test.layout["name"]], axis=1)
    permuted = ModelView(**{**test.__dict__, "params": params})
    assert not np.allclose(test.params, permuted.params)
    x = torch.from_numpy(test.probe)
    with torch.no_grad():
        for a, b in zip(test.modules(), permuted.modules()):
            torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_the_ablation_builds_its_variants_from_constructor_arguments(small_archive, opened):
    learners = load_benchmark("learners")
    for row, cls, options in learners.ABLATION:  # an unknown argument is a TypeError here
        method = learners.variant(cls, options)(seed=2)
        assert type(method) is cls and method.get_params() == {**cls(seed=2).get_params(), **options}, row
    ms = opened(small_archive)
    quick = learners.variant(load_method("learned-probes"), {"rank": 2, "epochs": 5})
    scores, seconds = learners.measure(ms, quick, [0])
    assert np.isfinite(scores["retrieval.map"]).all() and seconds > 0
