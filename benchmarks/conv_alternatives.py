"""The batched engine's convolutions by oneDNN against other ways to compute them, in one run.

For each layer of a small_cnn_zoo work unit (10 models, batch 32, 28x28 inputs, three 3x3 stride-2
layers) and of a digits500 unit (8x8, stride 1), times the three calls a training step makes,
forward, weight gradient and data gradient, as the engine makes them (grouped, channels-last,
oneDNN), and beside each the alternatives that compute the same tensor from the same inputs:
- im2col + batched matmul across the models (``F.unfold``, ``torch.bmm``: MKL), for all three
  (the data gradient adds col2im, ``F.fold``);
- for a stride-2 data gradient, its four phases as stride-1 convolutions on the output gradient
  (1x1, 1x2, 2x1 and 2x2 taps), interleaved: oneDNN's strided data-gradient kernel is the weakest
  of the engine at AVX2.
Prints the machine and its FMA peak first, then each method's GFLOP/s (every tap of every filter,
the padding's included, as torch's counter counts them) and share of the peak, and how far its
result is from oneDNN's. One torch thread, timed by its CPU time, best of --rounds.

    python benchmarks/conv_alternatives.py [--isa native|avx2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ISA_ENV, describe, machine, reexec_at_requested_isa  # noqa: E402
from results import recorded  # noqa: E402

aten = torch.ops.aten
M, B, C = 10, 32, 16  # models per unit, batch, channels per model
# (input channels per model, input side, stride): small_cnn_zoo's layers, then small_cnn's on digits.
LAYERS = [(1, 28, 2), (16, 14, 2), (16, 7, 2), (1, 8, 1), (16, 8, 1)]


class Layer:
    """One grouped 3x3 convolution (padding 1) of M models on random channels-last tensors."""

    def __init__(self, cin: int, side: int, stride: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.cin, self.side, self.stride = cin, side, stride
        self.out = (side - 1) // stride + 1
        cl = torch.channels_last
        self.x = torch.randn(B, M * cin, side, side, generator=g).contiguous(memory_format=cl)
        self.w = torch.randn(M * C, cin, 3, 3, generator=g).contiguous(memory_format=cl)
        self.dz = torch.randn(B, M * C, self.out, self.out, generator=g).contiguous(memory_format=cl)
        self.flops = 2 * B * M * C * cin * 9 * self.out**2
        self.wm = self.w.reshape(M, C, cin * 9)  # (model, out, in x tap)

    def _backward(self, mask):
        s = [self.stride] * 2
        return aten.convolution_backward(self.dz, self.x, self.w, None, s, [1, 1], [1, 1], False, [0, 0], M, mask)

    # oneDNN, as the engine calls it
    def forward(self):
        return F.conv2d(self.x, self.w, stride=self.stride, padding=1, groups=M)

    def weight_grad(self):
        return self._backward([False, True, False])[1]

    def data_grad(self):
        return self._backward([True, False, False])[0]

    # im2col + batched matmul
    def _cols(self):
        """(M, B * out^2, cin * 9): each model's input patches."""
        cols = F.unfold(self.x, 3, padding=1, stride=self.stride)  # B, M * cin * 9, out^2
        return cols.view(B, M, self.cin * 9, -1).permute(1, 0, 3, 2).reshape(M, -1, self.cin * 9)

    def _dz(self):
        """(M, B * out^2, C): each model's output gradient."""
        return self.dz.permute(0, 2, 3, 1).reshape(-1, M, C).transpose(0, 1)

    def forward_gemm(self):
        z = torch.bmm(self._cols(), self.wm.transpose(1, 2))  # M, B * out^2, C
        return z.view(M, B, self.out, self.out, C).permute(1, 0, 4, 2, 3).reshape(B, M * C, self.out, self.out)

    def weight_grad_gemm(self):
        return torch.bmm(self._dz().transpose(1, 2), self._cols()).view(M * C, self.cin, 3, 3)

    def data_grad_gemm(self):
        cols = torch.bmm(self._dz(), self.wm)  # M, B * out^2, cin * 9
        cols = cols.view(M, B, self.out**2, self.cin * 9).permute(1, 0, 3, 2).reshape(B, -1, self.out**2)
        return F.fold(cols, (self.side, self.side), 3, padding=1, stride=self.stride)

    def data_grad_phases(self):
        """dx[2a + p] = sum over taps k with 2o - 1 + k = 2a + p: even p takes tap 1 of o = a, odd p
        taps 2 (o = a) and 0 (o = a + 1); each phase a stride-1 correlation of dz."""
        taps = {0: [1], 1: [2, 0]}
        wt = self.w.reshape(M, C, self.cin, 3, 3).transpose(1, 2).reshape(M * self.cin, C, 3, 3)
        dx = torch.empty_like(self.x)
        for py in (0, 1):
            for px in (0, 1):
                sub = wt[:, :, taps[py]][:, :, :, taps[px]].contiguous(memory_format=torch.channels_last)
                kh, kw = sub.shape[-2:]
                o = F.conv2d(F.pad(self.dz, (0, kw - 1, 0, kh - 1)), sub, groups=M)
                ny, nx = len(range(py, self.side, 2)), len(range(px, self.side, 2))
                dx[:, :, py::2, px::2] = o[:, :, :ny, :nx]
        return dx

    def methods(self) -> dict[str, dict[str, object]]:
        """{pass: {method: callable}}, oneDNN's first."""
        data = {"oneDNN": self.data_grad, "im2col + bmm + col2im": self.data_grad_gemm}
        if self.stride == 2:
            data["four stride-1 phases"] = self.data_grad_phases
        out = {
            "forward": {"oneDNN": self.forward, "im2col + bmm": self.forward_gemm},
            "weight gradient": {"oneDNN": self.weight_grad, "im2col + bmm": self.weight_grad_gemm},
        }
        if self.cin > 1:  # the first layer's input (the images) needs no gradient
            out["data gradient"] = data
        return out


def best_time(fn, rounds: int, calls: int = 20) -> float:
    fn()  # untimed: oneDNN generates its kernel on the first call
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - t) / calls)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", choices=["native", *ISA_ENV], default="native", help="vector width to run at")
    ap.add_argument("--rounds", type=int, default=3, help="timings per method; the best counts")
    args = ap.parse_args()
    torch.set_num_threads(1)
    m = machine()
    print(describe(m))
    peak = m["fma_peak_gflops"]
    for cin, side, stride in LAYERS:
        layer = Layer(cin, side, stride)
        print(f"\n{cin}->{C} per model, {side}x{side} stride {stride}, {M} models x {B} images")
        for name, methods in layer.methods().items():
            want = None
            for method, fn in methods.items():
                got = fn()
                want = got if want is None else want
                err = float((got - want).abs().max() / want.abs().max())
                rate = layer.flops / best_time(fn, args.rounds) / 1e9
                share = f"{rate / peak:4.0%} of peak" if peak else ""
                print(f"  {name:16s} {method:22s} {rate:6.1f} GFLOP/s {share}  (largest difference {err:.0e})")


if __name__ == "__main__":
    reexec_at_requested_isa(sys.argv)
    with recorded("conv_alternatives"):
        main()
