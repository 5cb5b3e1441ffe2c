"""benchmarks/bench_batched.py reads the convolutions inside the batched engine from oneDNN's own log."""

from torch.utils.flop_counter import FlopCounterMode

from builders.batched import train_batched
from builders.plan import make_plan, work_units
from modelset.preset import load_preset

from .helpers import load_benchmark


def test_the_convolutions_onednn_logs_are_those_torch_counts():
    bench = load_benchmark("bench_batched")
    plan = make_plan(load_preset("digits500", ["epochs=1", "seeds=2", "tasks.count=2", "unit_size=2"]))
    unit = work_units(plan)[0]
    seconds, run, flops, lines = bench.convolutions_in_engine(unit)
    mapping = {bench.torch.ops.aten.convolution_backward: bench._conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        train_batched(unit)
    counted = sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    assert flops == counted > 0
    assert seconds > 0 and run > 0
    # small_cnn's first layer (no data gradient) and its two 16->16 layers of one shape
    kinds = sorted(line.split(",")[0].split()[1] + line.split(",")[1] for line in lines)
    assert kinds == [
        "backward_data 16->16 per model",
        "backward_weights 1->16 per model",
        "backward_weights 16->16 per model",
        "forward_training 1->16 per model",
        "forward_training 16->16 per model",
    ]
