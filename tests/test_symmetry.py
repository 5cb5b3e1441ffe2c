"""Weight-space symmetries (modelset.symmetry) on real modules of a built archive: each transform
changes the weights and leaves the function unchanged."""

import pytest
import torch

from modelset import symmetry
from modelset.archs import create_model
from modelset.errors import ModelsetError


def _transformed(ms, i, transform):
    """Model i of the archive, and a fresh module holding its transformed weights."""
    net = ms.model(i)
    sd = net.state_dict()
    weights, biases = symmetry.layer_tensors(sd)
    other = create_model(
        ms.models.loc[i, "arch"], in_channels=1, n_classes=3, activation=ms.models.loc[i, "activation"]
    )
    other.load_state_dict(symmetry.to_state_dict(sd, *transform(weights, biases)))
    return net, other.eval()


def _assert_same_function(ms, i, net, other):
    x, _ = ms.task_data(int(ms.models.loc[i, "task"]))
    with torch.no_grad():
        torch.testing.assert_close(net(x), other(x), rtol=1e-4, atol=1e-5)
    moved = [not torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values())]
    assert sum(moved) >= 6  # every hidden layer's weights and biases, and the layers after them


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_permutation_keeps_every_function(sweep_archive, activation, opened):
    ms = opened(sweep_archive)
    gen = torch.Generator().manual_seed(0)
    for i in ms.models.index[ms.models["activation"] == activation][:3]:
        net, other = _transformed(ms, i, lambda w, b: symmetry.random_permutation(w, b, gen))
        _assert_same_function(ms, i, net, other)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_activations_own_symmetry_keeps_every_function(sweep_archive, activation, opened):
    ms = opened(sweep_archive)
    gen = torch.Generator().manual_seed(1)
    for i in ms.models.index[ms.models["activation"] == activation][:3]:
        net, other = _transformed(
            ms, i, lambda w, b: symmetry.scale_hidden(w, b, symmetry.random_factors(activation, b, gen))
        )
        _assert_same_function(ms, i, net, other)
        net, other = _transformed(ms, i, lambda w, b: symmetry.random_symmetry(w, b, activation, gen))
        _assert_same_function(ms, i, net, other)


def test_each_symmetry_is_only_the_activations_own(sweep_archive, opened):
    """Scaling breaks tanh, a sign flip breaks relu: the registry pairs each with its activation."""
    ms = opened(sweep_archive)
    gen = torch.Generator().manual_seed(2)
    m = ms.models
    for act, wrong in (("relu", "tanh"), ("tanh", "relu")):
        i = m.index[m["activation"] == act][0]
        net, other = _transformed(
            ms, i, lambda w, b, wrong=wrong: symmetry.scale_hidden(w, b, symmetry.random_factors(wrong, b, gen))
        )
        x, _ = ms.task_data(int(m.loc[i, "task"]))
        with torch.no_grad():
            assert not torch.allclose(net(x), other(x), rtol=1e-3, atol=1e-3)
    with pytest.raises(ModelsetError, match="'gelu' has no scaling or sign symmetry"):
        symmetry.random_factors("gelu", [torch.zeros(1, 4)] * 2, gen)


def test_chain_refuses_an_architecture_it_cannot_transform():
    net = create_model("vgg4_bn", in_channels=3, n_classes=2)
    with pytest.raises(ModelsetError, match="not a chain of convolutions"):
        symmetry.layer_tensors(net.state_dict())


def test_there_is_one_permutation_helper():
    """The learned methods' augmentation is modelset.symmetry's permutation, not a copy."""
    from metrics.training import permute_hidden

    assert permute_hidden is symmetry.random_permutation
