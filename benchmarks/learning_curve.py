"""How a property predictor's accuracy prediction grows with the models it is fitted on: the
learning curve on an archive's fixed split (task_id), as a zoo-size budget question.

A built-in property method (default stats-gbm) is fitted on random subsets of the split's training
models, --repeats draws per size, and scored on all of the held-out models as the board scores it
(R² and Kendall tau of test accuracy); the last size is the whole training part, the board's own
setting. A straight line through R² (and tau) against log2(models) over the last three sizes then
says how many training models --target (and --tau-target) would take. This reads the held-out
labels, as the scorer does: a maintainer's diagnostic, not a submission.

    .venv/bin/python benchmarks/learning_curve.py data/fashion-mnist-scz.h5 [--method stats-gbm]
        [--sizes 100,200,400,600] [--repeats 5] [--target 0.95] [--tau-target 0.85]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import recorded  # noqa: E402

import modelset  # noqa: E402
from metrics.methods import BUILTIN, load_method  # noqa: E402
from metrics.protocols import RegressionEvaluator  # noqa: E402
from metrics.views import archive_view  # noqa: E402
from modelset.protocols import PROTOCOLS, split_targets  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive")
    ap.add_argument("--method", default="stats-gbm", choices=list(BUILTIN))
    ap.add_argument("--sizes", default="100,200,400,600", help="training-model counts below the whole part")
    ap.add_argument("--repeats", type=int, default=5, help="random subsets per size (and method seeds)")
    ap.add_argument("--target", type=float, default=0.95, help="the R² to project the zoo size of")
    ap.add_argument("--tau-target", type=float, default=0.85, help="the Kendall tau to project it of")
    args = ap.parse_args()
    protocol = PROTOCOLS["accuracy"]
    with modelset.load(args.archive) as ms:
        parts = ms.split(protocol.split.name)
        train, test = parts[protocol.split.train], parts[protocol.split.test[0]]
        view = archive_view(ms, train, True, targets=split_targets(ms, protocol.split, train, [protocol]))
        held_out = archive_view(ms, test, False)
        truth = ms.models.loc[test, "test_acc"].to_numpy(np.float64)
    sizes = [n for n in map(int, args.sizes.split(",")) if n < len(train)] + [len(train)]
    print(
        f"{args.archive}: {args.method} fitted on n of {len(train)} training models, scored on {len(test)} "
        f"held-out models' test accuracy; {args.repeats} draws per n (the whole part: {args.repeats} seeds)"
    )
    print(f"  {'n':>6}  {'R2 mean':>8}  {'R2 sd':>6}  {'tau mean':>8}  {'tau sd':>6}")
    rows = []
    for n in sizes:
        scores = []
        for r in range(args.repeats):
            idx = np.sort(np.random.default_rng([n, r]).permutation(len(train))[:n])
            method = load_method(BUILTIN[args.method].spec)(seed=r)
            method.fit(view.subset(idx))
            pred = method.predict_property(held_out, "test_acc")
            score = RegressionEvaluator().eval({"y_true": truth, "y_pred": pred})  # as the board scores it
            scores.append((score["r2"], score["kendall"]))
        s = np.array(scores)
        rows.append((n, *s.mean(0)))
        print(f"  {n:>6}  {s[:, 0].mean():>8.3f}  {s[:, 0].std():>6.3f}  {s[:, 1].mean():>8.3f}  {s[:, 1].std():>6.3f}")
    x = np.log2([row[0] for row in rows[-3:]])
    for name, col, target in (("R²", 1, args.target), ("tau", 2, args.tau_target)):
        slope, icept = np.polyfit(x, [row[col] for row in rows[-3:]], 1)
        line = f"{name} gains {slope:.3f} per doubling over the last three sizes"
        if slope > 0 and rows[-1][col] < target:
            need = 2 ** ((target - icept) / slope)
            line += f": {name} {target} at about {need:,.0f} training models ({need / len(train):.1f}x this zoo's {len(train)})"
        print(line)
    return 0


if __name__ == "__main__":
    with recorded("learning_curve"):
        sys.exit(main())
