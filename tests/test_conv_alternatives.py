"""benchmarks/conv_alternatives.py: every alternative it times computes the very tensor oneDNN's
call computes, on each layer of small_cnn_zoo and small_cnn; a rate of a wrong result is no figure."""

import pytest
import torch

from .helpers import load_benchmark

bench = load_benchmark("conv_alternatives")


@pytest.mark.parametrize("cin, side, stride", bench.LAYERS)
def test_each_alternative_computes_what_onednn_computes(cin, side, stride):
    layer = bench.Layer(cin, side, stride, seed=cin + side)
    passes = layer.methods()
    assert ("data gradient" in passes) == (cin > 1)
    if stride == 2 and cin > 1:
        assert "four stride-1 phases" in passes["data gradient"]
    for name, methods in passes.items():
        want = methods["oneDNN"]()
        assert len(methods) > 1, name
        for method, fn in methods.items():
            got = fn()
            assert got.shape == want.shape, (name, method)
            torch.testing.assert_close(
                got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()), msg=f"{name}: {method}"
            )
