"""The Small CNN Zoo's format (Unterthiner et al. 2020, google-research/dnn_predict_accuracy), out
of an archive and into one, so that the field's loaders (nfn's ``ZooDataset``, the neural-graphs
repository's copy of it) read our zoos and our tools read theirs.

A zoo directory holds:
- ``weights.npy``: one float32 row per (run, checkpoint), each layer's kernel then bias in
  TensorFlow's order: conv kernels (kh, kw, in, out), dense kernels (in, out).
- ``metrics.csv.gz`` (the release's name, what nfn reads; ``metrics.csv`` the same table plain):
  one row per weights row, ``config.*`` (the run's flags: ``config.learning_rate``,
  ``config.activation``, ``config.w_init``, ``config.l2reg``...), ``modeldir`` (one per run),
  ``step`` (the epoch of the checkpoint: 86 is the release's last), ``test_accuracy``,
  ``test_loss``, ``train_accuracy``, ``train_loss``.
- ``layout.csv``: ``varname`` (``sequential/conv2d/kernel:0``...), ``start_idx``, ``end_idx``,
  ``size``, ``shape`` (a Python tuple, e.g. ``(3, 3, 1, 16)``) of each tensor in a row.
- ``<dataset>_split.csv`` (nfn's form): a permutation of the weights rows, one index a line, no
  header. nfn keeps the final checkpoints in that order, tests on the second half and trains (and
  validates) on the first.

Our export adds ``modelset.*`` columns (model id, architecture, task, its classes and transform,
seed, dataset fingerprint), which the field's loaders ignore and our import reads back, so a round
trip rebuilds the same models, tasks and checkpoints. What does not travel is in README.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zlib

import numpy as np
import pandas as pd

from .errors import ModelsetError

# modelset recipe key -> (the zoo's config flag, value to the zoo, value back). Keras's l2reg adds
# l2reg * ||w||^2 to the loss (a gradient of 2 * l2reg * w, on kernels only); torch's weight_decay adds
# weight_decay * w to every parameter's gradient: l2reg = weight_decay / 2 for the kernels.
_INITS = {
    "default": "torch_default",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
    "orthogonal": "orthogonal",
}
_BACK = {v: k for k, v in _INITS.items()}
CONFIG = {
    "lr": ("learning_rate", float, float),
    "weight_decay": ("l2reg", lambda v: float(v) / 2, lambda v: float(v) * 2),
    "init": ("w_init", lambda v: _INITS.get(v, v), lambda v: _BACK.get(v, v)),
    "batch_size": ("batchsize", int, int),
    "epochs": ("epochs", int, int),
    "optimizer": ("optimizer", str, str),
    "activation": ("activation", str, str),
}
_FROM_ZOO = {flag: (key, back) for key, (flag, _, back) in CONFIG.items()}
METRIC_COLUMNS = {
    "test_accuracy": "test_acc",
    "test_loss": "test_loss",
    "train_accuracy": "train_acc",
    "train_loss": "train_loss",
}
DEFAULT_ARCH = "small_cnn_zoo_tf"  # the zoo's own CNN, as TensorFlow runs it
_VARNAMES = ("conv2d", "dense")
# Flags our export writes as the zoo describes its runs, which are not recipe keys of ours (a round
# trip drops them); config.random_seed is a run's init seed.
_EXPORT_CONSTANTS = ("dnn_architecture", "num_layers", "num_units", "dropout", "train_fraction", "b_init")


def _tf_order(w: np.ndarray) -> np.ndarray:
    """A batch of torch weights (n, out, in[, kh, kw]) in TensorFlow's order (n, [kh, kw,] in, out)."""
    return w.transpose(0, 3, 4, 2, 1) if w.ndim == 5 else w.transpose(0, 2, 1)


def _torch_order(w: np.ndarray) -> np.ndarray:
    return w.transpose(0, 4, 3, 1, 2) if w.ndim == 5 else w.transpose(0, 2, 1)


def _sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- export ------------------------------------------------------------------------------------


def export(ms, out_dir) -> dict:
    """Write archive ``ms`` (an open Archive) in the zoo's format into the new directory ``out_dir``
    (written beside it, renamed into place once complete). Returns {rows, models, files}."""
    from .symmetry import chain

    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir):
        raise ModelsetError(
            f"{out_dir} exists; give a new directory (the export writes weights.npy, "
            f"metrics.csv(.gz), layout.csv and a split CSV there)"
        )
    if len(ms.architectures) != 1:
        raise ModelsetError(f"the Small CNN Zoo's format holds one architecture; this archive has {ms.architectures}")
    arch = ms.architectures[0]
    lay = ms.layout(arch)
    shapes = dict(zip(lay["name"], lay["shape"]))
    try:
        pairs = chain(shapes)
    except ModelsetError as e:
        raise ModelsetError(f"architecture {arch!r} cannot be written as the Small CNN Zoo's: {e}") from None
    by = lay.set_index("name")
    m, epochs = ms.models, ms.checkpoint_epochs
    k = len(epochs) or 1  # rows per model; without checkpoints, the final state at its own epoch count
    # TensorFlow's variables, in the order Keras lists them: kernel, bias, layer by layer.
    varnames, tf_shapes = [], []
    for j, (w, _) in enumerate(pairs):
        kind = _VARNAMES[0] if len(shapes[w]) == 4 else _VARNAMES[1]
        n_same = sum(len(shapes[x]) == len(shapes[w]) for x, _ in pairs[:j])
        base = f"sequential/{kind}{'' if n_same == 0 else f'_{n_same}'}"
        o, i, *hw = shapes[w]
        varnames += [f"{base}/kernel:0", f"{base}/bias:0"]
        tf_shapes += [(*hw, i, o), (o,)]
    sizes = [int(np.prod(s)) for s in tf_shapes]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    layout_csv = pd.DataFrame(
        {
            "varname": varnames,
            "start_idx": starts,
            "end_idx": starts + sizes,
            "size": sizes,
            "shape": [str(tuple(int(d) for d in s)) for s in tf_shapes],
        }
    )

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the result is a normal directory
        weights = np.lib.format.open_memmap(
            os.path.join(tmp, "weights.npy"), mode="w+", dtype="<f4", shape=(len(m) * k, int(sum(sizes)))
        )
        block = 256  # models per read: memory stays bounded on any archive
        for start in range(0, len(m), block):
            ids = m["id"].to_numpy()[start : start + block]
            stack = np.stack([ms.params(ids, epoch=e) for e in epochs], axis=1) if epochs else ms.params(ids)[:, None]
            flat = stack.reshape(len(ids) * k, -1)
            parts = []
            for w, b in pairs:
                r = by.loc[w]
                t = flat[:, r["offset"] : r["offset"] + r["size"]].reshape(len(flat), *r["shape"])
                parts += [_tf_order(t).reshape(len(flat), -1), flat[:, by.loc[b, "offset"] :][:, : by.loc[b, "size"]]]
            weights[start * k : (start + len(ids)) * k] = np.concatenate(parts, axis=1)
        weights.flush()
        del weights
        table = _metrics_table(ms, k, arch, len(pairs) - 1, int(shapes[pairs[0][0]][0]))
        table.to_csv(os.path.join(tmp, "metrics.csv"), index=False)
        table.to_csv(os.path.join(tmp, "metrics.csv.gz"), index=False, compression={"method": "gzip", "mtime": 0})
        layout_csv.to_csv(os.path.join(tmp, "layout.csv"), index=False)
        split = ms.split("task_id")  # nfn's form: the training models' rows first, then the held-out ones
        order = np.concatenate(
            [np.flatnonzero(np.isin(np.repeat(m["id"].to_numpy(), k), split[p])) for p in ("train", "test")]
        )
        split_name = f"{ms.attrs['dataset']}_split.csv"
        pd.Series(order).to_csv(os.path.join(tmp, split_name), index=False, header=False)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"rows": len(m) * k, "models": len(m), "files": sorted(os.listdir(out_dir))}


def _metrics_table(ms, k: int, arch, depth, width) -> pd.DataFrame:
    from .schema import REQUIRED_MODEL_COLUMNS

    m, tasks = ms.models, ms.tasks
    recipe = [c for c in m.columns if c not in REQUIRED_MODEL_COLUMNS]  # the training recipe's keys
    rep = m.loc[m.index.repeat(k)].reset_index(drop=True)
    out = {
        "config.dataset": ms.attrs["dataset"],
        "config.dnn_architecture": "cnn",
        "config.num_layers": depth,
        "config.num_units": width,
        "config.dropout": 0.0,
        "config.train_fraction": 1.0,
        "config.b_init": "torch_default",
        "config.random_seed": rep["init_seed"].to_numpy(),
    }
    for key in recipe:
        flag, to_zoo, _ = CONFIG.get(key, (key, lambda v: v, None))
        out[f"config.{flag}"] = [to_zoo(v) for v in rep[key]]
    out["modeldir"] = [f"{ms.attrs['name']}/model_{i:06d}" for i in rep["id"]]
    out["step"] = np.tile(ms.checkpoint_epochs, len(m)) if ms.checkpoint_epochs else rep["epochs"].to_numpy()
    if ms.checkpoint_epochs:
        c = ms.checkpoints
        for col, ours in METRIC_COLUMNS.items():
            out[col] = c[ours].to_numpy()
    else:
        for col, ours in METRIC_COLUMNS.items():
            out[col] = rep[ours].to_numpy()
    classes = tasks.loc[rep["task"], "classes"]
    out.update(
        {
            "modelset.model": rep["id"].to_numpy(),
            "modelset.arch": arch,
            "modelset.task": rep["task"].to_numpy(),
            "modelset.classes": [";".join(map(str, c)) for c in classes],
            "modelset.transform": tasks.loc[rep["task"], "transform"].to_numpy(),
            "modelset.task_name": tasks.loc[rep["task"], "name"].to_numpy(),
            "modelset.seed": rep["seed"].to_numpy(),
            "modelset.data_seed": rep["data_seed"].to_numpy(),
            "modelset.dataset_fingerprint": ms.attrs.get("dataset_fingerprint", ""),
        }
    )
    return pd.DataFrame({c: (v if np.ndim(v) else [v] * len(rep)) for c, v in out.items()})


# -- import ------------------------------------------------------------------------------------


def _read_dir(src: str):
    """(weights memmap, metrics, layout, split order or None, {file: sha256}) of a zoo directory,
    every way it can be malformed turned into one line."""
    hint = "a Small CNN Zoo directory holds weights.npy, metrics.csv.gz (or metrics.csv) and layout.csv"
    if not os.path.isdir(src):
        raise ModelsetError(f"{src}: no such directory; {hint}")
    names = os.listdir(src)
    metrics_name = next((n for n in ("metrics.csv.gz", "metrics.csv") if n in names), None)
    for need, present in (
        ("weights.npy", "weights.npy" in names),
        ("metrics.csv.gz", metrics_name),
        ("layout.csv", "layout.csv" in names),
    ):
        if not present:
            raise ModelsetError(f"{src}: no {need}; {hint}")
    splits = sorted(n for n in names if n.endswith("_split.csv"))
    if len(splits) > 1:
        raise ModelsetError(f"{src}: several split files ({', '.join(splits)}); keep the one in nfn's form")
    files = ["weights.npy", metrics_name, "layout.csv", *splits]
    for f in files:  # a link out of DIR or a device (/dev/zero) is not a zoo's file
        real = os.path.realpath(os.path.join(src, f))
        if os.path.commonpath([real, os.path.realpath(src)]) != os.path.realpath(src) or not os.path.isfile(real):
            raise ModelsetError(
                f"{src}/{f}: a link out of the directory or not a regular file ({real}); copy the file in"
            )
    sums = {f: _sha256(os.path.join(src, f)) for f in files}
    try:
        weights = np.load(os.path.join(src, "weights.npy"), mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ModelsetError(f"{src}/weights.npy: not a numpy array file ({e}); re-download or re-export it") from None
    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise ModelsetError(
            f"{src}/weights.npy: expected a 2-D float matrix (rows x parameters), "
            f"got {weights.dtype} of shape {weights.shape}"
        )
    # A metrics row is far shorter than a weights row: the table never decompresses to more than
    # weights.npy's size (plus room for a small zoo), which stops a gzip bomb before it is parsed.
    limit = CSV_SLACK + os.path.getsize(os.path.join(src, "weights.npy"))
    try:
        metrics = _read_csv(os.path.join(src, metrics_name), limit)
        layout = _read_csv(os.path.join(src, "layout.csv"), limit)
        order = _read_csv(os.path.join(src, splits[0]), limit, header=None)[0].to_numpy() if splits else None
    except (ValueError, OSError, pd.errors.ParserError, EOFError, zlib.error) as e:
        raise ModelsetError(
            f"{src}: cannot read a CSV file ({str(e).splitlines()[0]}); re-download or re-export it"
        ) from None
    for name, table, cols in (
        ("metrics", metrics, ("modeldir", "step", "test_accuracy", "train_accuracy")),
        ("layout.csv", layout, ("varname", "start_idx", "end_idx", "shape")),
    ):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ModelsetError(
                f"{src}/{metrics_name if name == 'metrics' else name}: no column "
                f"{missing[0]!r} (has {', '.join(map(str, table.columns[:8]))}); {hint}"
            )
    if len(metrics) != len(weights):
        raise ModelsetError(
            f"{src}: {metrics_name} has {len(metrics)} rows but weights.npy {len(weights)}; "
            f"they describe the same rows, one each"
        )
    if order is not None and (order.dtype.kind not in "iu" or sorted(order) != list(range(len(weights)))):
        raise ModelsetError(
            f"{src}/{splits[0]}: not a permutation of the {len(weights)} weights rows "
            f"(nfn's form: one row index a line, no header)"
        )
    return weights, metrics, layout, order, sums


CSV_SLACK = 64 << 20


def _read_csv(path: str, limit: int, **kwargs) -> pd.DataFrame:
    """A CSV file, gzipped if its name ends in .gz, refused once it decompresses past ``limit`` bytes."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ModelsetError(
            f"{path}: decompresses to more than {limit} bytes, more than a zoo with this weights.npy "
            f"describes (a gzip bomb or the wrong file); re-download or re-export it"
        )
    return pd.read_csv(io.BytesIO(data), **kwargs)


MAX_STEP = 1000  # the release's last step is 86; the import allocates a curve point per step
MAX_CLASSES = 100_000  # of a task's base dataset (tasks_classes is a task x class mask)


def _checked_metrics(src, metrics: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """The metrics table with every column the import computes with checked to hold what the format
    says (a run name, whole steps within MAX_STEP, numbers, task ids and classes of the head)."""

    def bad(col, what):
        return ModelsetError(f"{src}: metrics column {col} must hold {what}; re-download or re-export the zoo")

    if metrics["modeldir"].isna().any():
        raise bad("modeldir", "a run name in every row")
    whole = {"step": MAX_STEP, **{f"modelset.{c}": None for c in ("model", "task", "seed", "data_seed")}}
    for col in [c for c in (*whole, *METRIC_COLUMNS) if c in metrics.columns]:
        values = pd.to_numeric(metrics[col], errors="coerce")
        if col in whole:
            top = whole[col]
            if values.isna().any() or (values != values.round()).any() or (values < (0 if top else -(2**62))).any():
                raise bad(col, "whole numbers" + (" >= 0" if top else ""))
            if top is not None and (values > top).any():
                raise bad(col, f"steps 0..{top}")
            values = values.astype(np.int64)
        elif values.isna().sum() > metrics[col].isna().sum():
            raise bad(col, "numbers")
        metrics[col] = values
    if "modelset.classes" in metrics.columns:
        for c in metrics["modelset.classes"].unique():
            parts = str(c).split(";")
            if (
                not all(p.isdigit() and int(p) < MAX_CLASSES for p in parts)
                or len(set(parts)) != n_classes
                or len(parts) != n_classes
            ):
                raise bad("modelset.classes", f"{n_classes} distinct class indices joined by ';', got {c!r}")
    return metrics


def _tensors(src, layout: pd.DataFrame, width: int):
    """[(kernel start, end, TF shape), (bias start, end, shape)] per layer, checked to cover the row."""
    rows = []
    for r in layout.itertuples(index=False):
        try:
            shape = tuple(int(d) for d in str(r.shape).strip("()[] ").replace(" ", "").split(",") if d)
        except ValueError:
            raise ModelsetError(f"{src}/layout.csv: shape {r.shape!r} of {r.varname} is not a tuple of sizes") from None
        if int(r.end_idx) - int(r.start_idx) != math.prod(shape):
            raise ModelsetError(
                f"{src}/layout.csv: {r.varname} spans {r.end_idx - r.start_idx} values, "
                f"its shape {shape} holds {math.prod(shape)}"
            )
        kind = (
            "kernel" if str(r.varname).endswith("kernel:0") else "bias" if str(r.varname).endswith("bias:0") else None
        )
        if kind is None:
            raise ModelsetError(
                f"{src}/layout.csv: variable {r.varname!r} is neither a kernel nor a bias; the zoo's CNN has only those"
            )
        rows.append((kind, int(r.start_idx), int(r.end_idx), shape))
    kernels, biases = [r for r in rows if r[0] == "kernel"], [r for r in rows if r[0] == "bias"]
    spans = sorted((s, e) for _, s, e, _ in rows)
    if (
        len(kernels) != len(biases)
        or spans[0][0] != 0
        or spans[-1][1] != width
        or any(a[1] != b[0] for a, b in zip(spans, spans[1:]))
    ):
        raise ModelsetError(
            f"{src}/layout.csv: its variables do not tile the {width} columns of weights.npy, "
            f"one kernel and one bias per layer"
        )
    return list(zip(kernels, biases))


def import_zoo(src, out, data_root=None) -> dict:
    """Read the zoo directory ``src`` into a new archive ``out`` (written atomically). Returns a
    report: models, skipped runs and why, whether ``ms.model(i)`` reproduces the stored accuracy."""
    from .archs import ACTIVATIONS, create_model, list_archs
    from .archs import layout as torch_layout
    from .datasets import load_dataset
    from .preset import DEFAULTS
    from .protocols import make_splits
    from .schema import CHECKPOINT_EPOCHS, CURVES, model_columns, param_checksum
    from .splits import epoch as epoch_split
    from .tasks import Task, relation_matrix
    from .writer import ArchiveWriter

    src = os.path.abspath(os.fspath(src))
    if os.path.isdir(src) and os.path.realpath(out) in {
        os.path.realpath(os.path.join(src, n)) for n in os.listdir(src)
    }:
        raise ModelsetError(f"--out {out} is a file of the zoo being imported; give the archive a path of its own")
    weights, metrics, layout, order, sums = _read_dir(src)
    layers = _tensors(src, layout, weights.shape[1])
    metrics = _checked_metrics(src, metrics.reset_index(drop=True), layers[-1][1][3][0])
    runs = list(dict.fromkeys(metrics["modeldir"]))
    rows_of = metrics.groupby("modeldir", sort=False).indices
    # One row per run: final states only (an export of an archive without checkpoints), at any step.
    single = all(len(rows_of[run]) == 1 for run in runs)
    steps = [] if single else sorted(int(s) for s in np.unique(metrics.loc[rows_of[runs[0]], "step"]))
    kept, skipped = [], {}
    for run in runs:
        r = rows_of[run]
        run_steps = metrics.loc[r, "step"].to_numpy()
        if not single and sorted(run_steps.tolist()) != steps:
            skipped.setdefault(f"checkpoints other than the first run's steps {steps}", []).append(run)
        elif not np.isfinite(weights[np.sort(r)]).all():
            skipped.setdefault("non-finite weights", []).append(run)
        else:
            kept.append((run, r[np.argsort(run_steps)]))
    if not kept:
        raise ModelsetError(f"{src}: no run has complete, finite checkpoints ({'; '.join(skipped)}); nothing to import")
    ours = "modelset.arch" in metrics.columns
    arch = str(metrics["modelset.arch"].iloc[0]) if ours else DEFAULT_ARCH
    if arch not in list_archs():
        raise ModelsetError(
            f"{src}: architecture {arch!r} (modelset.arch) is not registered here; available: {', '.join(list_archs())}"
        )
    (k0, _), *_ = layers
    in_channels, n_classes = k0[3][-2], layers[-1][1][3][0]
    activation = metrics.get("config.activation", pd.Series(["relu"] * len(metrics)))
    bad = sorted(set(activation) - set(ACTIVATIONS))
    if bad:
        raise ModelsetError(f"{src}: activation {bad[0]!r} has no counterpart here ({', '.join(ACTIVATIONS)})")
    net = create_model(arch, in_channels=in_channels, n_classes=n_classes)
    layout_rows = torch_layout(net)
    want = [tuple(s) for _, s, *_ in layout_rows]
    have = [s for (_, _, _, ks), (_, _, _, bs) in layers for s in (_torch_shape(ks), bs)]
    if want != have:
        raise ModelsetError(
            f"{src}/layout.csv: tensors {have} are not those of {arch} ({want}); the import knows "
            f"the Small CNN Zoo's CNN (3 stride-2 convolutions of 16, GAP, a dense head)"
        )

    # one model per kept run: its final checkpoint, recipe and identity
    final = np.array([r[-1] for _, r in kept])
    fm = metrics.loc[final].reset_index(drop=True)
    n, k = len(kept), len(steps) or 1  # k: rows per run
    recipe = {}
    skip = {"dataset", "random_seed", *(_EXPORT_CONSTANTS if ours else ())}
    for col in [c for c in metrics.columns if c.startswith("config.") and c[len("config.") :] not in skip]:
        key, back = _FROM_ZOO.get(col[len("config.") :], (col[len("config.") :], lambda v: v))
        recipe[key] = []
        for v in fm[col]:
            try:
                recipe[key].append(back(v))
            except (TypeError, ValueError):
                raise ModelsetError(
                    f"{src}: column {col} holds {v!r}, which is not a {key}; re-export the zoo"
                ) from None
    recipe.setdefault("activation", ["relu"] * n)
    dataset_name = str(metrics["config.dataset"].iloc[0]) if "config.dataset" in metrics.columns else "unknown"
    if ours:
        task_of = fm["modelset.task"].to_numpy(np.int64)
        by_id = {}
        for t, c, tr, name in zip(task_of, fm["modelset.classes"], fm["modelset.transform"], fm["modelset.task_name"]):
            by_id[int(t)] = Task(int(t), tuple(int(x) for x in str(c).split(";")), str(tr), str(name))
        tasks = [by_id[t] for t in sorted(by_id)]
        seeds, data_seeds = fm["modelset.seed"].to_numpy(np.int64), fm["modelset.data_seed"].to_numpy(np.int64)
    else:  # the zoo's one 10-class task; each run its own "seed", so splits by seed divide runs
        task_of = np.zeros(n, np.int64)
        tasks = [Task(0, tuple(range(n_classes)), "none", dataset_name)]
        seeds, data_seeds = np.arange(n, dtype=np.int64), np.full(n, -1, np.int64)
    init_seeds = pd.to_numeric(fm.get("config.random_seed", pd.Series([-1] * n)), errors="coerce").fillna(-1)

    dataset, why_not = None, None
    if ours:
        try:
            dataset = load_dataset(dataset_name, data_root)
        except ModelsetError as e:
            why_not = f"the dataset {dataset_name!r} the models were trained on is not here ({e})"
        if dataset is not None and dataset.fingerprint != str(fm["modelset.dataset_fingerprint"].iloc[0]):
            dataset, why_not = None, f"the {dataset_name!r} here is not the data these models saw (fingerprint differs)"
        if dataset is not None and max(max(t.classes) for t in tasks) >= dataset.n_classes:
            raise ModelsetError(
                f"{src}: modelset.classes names classes {dataset_name!r} does not have; re-export the zoo"
            )
    else:
        why_not = (
            f"the zoo's inputs are TFDS {dataset_name} images averaged to grayscale and scaled to [-1, 1]; "
            f"modelset's datasets are standardised otherwise, so ms.task_data does not give what these models "
            f"saw: evaluate ms.model(i) on inputs prepared as the zoo's train_network.py prepares them"
        )

    # An archive names a dataset ms.dataset() can load; data that is not modelset's gets a name no
    # loader has, so ms.task_data refuses rather than hand over differently prepared images.
    archive_dataset = dataset_name if dataset is not None else f"small-cnn-zoo:{dataset_name}"
    source = json.dumps(sums, sort_keys=True)
    fractions = dict(DEFAULTS["splits"])
    grid = {key: sorted(set(v), key=str) for key, v in recipe.items() if len(set(v)) > 1}
    preset_text = _toml(
        {
            "name": os.path.basename(src.rstrip("/")) or "small-cnn-zoo",
            "description": f"imported from the Small CNN Zoo format ({src})",
            "dataset": archive_dataset,
            "arch": arch,
            "family": "dense",
            "seed": 0,
            "checkpoints": steps,
            "train": {key: v[0] for key, v in recipe.items()},
            "grid": grid,
            "splits": fractions,
        }
    )
    attrs = {
        "name": os.path.basename(src.rstrip("/")) or "small-cnn-zoo",
        "preset": preset_text,
        "dataset": archive_dataset,
        "seed": 0,
        "n_models": n,
        "plan_hash": hashlib.sha256(source.encode()).hexdigest()[:16],
        "source_format": "small-cnn-zoo",
        "source_sha256": source,
        "import_note": why_not or "ms.model(i) reproduces the stored accuracy",
    }
    if dataset is not None:
        attrs["dataset_fingerprint"] = dataset.fingerprint
    if steps:
        attrs[CHECKPOINT_EPOCHS] = np.asarray(steps, np.int64)
    records, ckpt_rows = [], []
    last = int(metrics.loc[final, "step"].max())
    curves = {c: np.full((n, max(last, 1)), np.nan, np.float32) for c in CURVES}
    with ArchiveWriter(out, attrs) as w:
        _write_dataset(w, dataset, dataset_name, n_classes, in_channels)
        w.write_tasks(
            tasks,
            max(max(t.classes) for t in tasks) + 1 if dataset is None else dataset.n_classes,
            relation_matrix(tasks, "jaccard"),
        )
        w.create_architecture(arch, layout_rows, n, {"in_channels": in_channels, "n_classes": n_classes}, len(steps))
        block = 256
        for start in range(0, n, block):
            idx = np.concatenate([r for _, r in kept[start : start + block]])
            rows = _torch_rows(np.asarray(weights[np.sort(idx)])[np.argsort(np.argsort(idx))], layers)
            rows = rows.reshape(-1, k, rows.shape[1])
            if steps:
                w.write_checkpoints(arch, start, rows)
            w.write_params(arch, start, rows[:, -1])
            sub = metrics.loc[idx].reset_index(drop=True)  # the block's rows, model by model, step by step
            for col in ("train_loss", "test_loss"):
                if col not in sub:
                    sub[col] = np.nan
            for j in range(len(rows)):
                i = start + j
                for e in range(k):
                    mrow = sub.iloc[j * k + e]
                    step = int(mrow["step"])
                    if steps:
                        ckpt_rows.append(
                            {
                                "model": i,
                                "epoch": step,
                                "train_acc": float(mrow["train_accuracy"]),
                                "train_loss": float(mrow["train_loss"]),
                                "test_acc": float(mrow["test_accuracy"]),
                                "test_loss": float(mrow["test_loss"]),
                                "checksum": param_checksum(rows[j, e]),
                                "family_checksum": "",
                            }
                        )
                    if step >= 1:  # the spec: a checkpoint's test metrics are the curves' at that epoch
                        curves["test_acc"][i, step - 1] = mrow["test_accuracy"]
                        curves["test_loss"][i, step - 1] = mrow["test_loss"]
                p = rows[j, -1]
                records.append(
                    {
                        "id": i,
                        "arch": arch,
                        "family": "dense",
                        "row": i,
                        "family_row": -1,
                        "task": int(task_of[i]),
                        "seed": int(seeds[i]),
                        "init_seed": int(init_seeds[i]),
                        "data_seed": int(data_seeds[i]),
                        **{key: v[i] for key, v in recipe.items()},
                        **{
                            ours_: float(fm.loc[i, col]) if col in fm else np.nan
                            for col, ours_ in METRIC_COLUMNS.items()
                        },
                        "n_params": int(p.size),
                        "sparsity": float(np.mean(p == 0)),
                        "sparsity_layers": "",
                        "groups": "",
                        "gates": "",
                        "n_family_params": int(p.size),
                        "checksum": param_checksum(p),
                        "family_checksum": "",
                    }
                )
        models = pd.DataFrame.from_records(records, columns=model_columns(list(recipe)))
        zoo = w.write_tables(models, curves, ckpt_rows if steps else [])
        drawn = make_splits(zoo, fractions, 0)
        if order is not None:  # nfn's rule: final checkpoints in the file's order, second half held out
            position = {row: p for p, row in enumerate(order)}
            ranked = np.argsort([position[r[-1]] for _, r in kept], kind="stable")
            half = int(0.5 * n)
            drawn["task_id"] = {"train": np.sort(ranked[:half]), "test": np.sort(ranked[half:])}
            if "epoch" in drawn:
                drawn["epoch"] = epoch_split(zoo, fractions, np.random.default_rng([0, 0x5EED]), drawn)
        w.write_splits(drawn)
    return {
        "models": n,
        "checkpoints": steps,
        "arch": arch,
        "skipped": {why: len(v) for why, v in skipped.items()},
        "reproduces": why_not is None,
        "why_not": why_not,
    }


def _torch_shape(tf_shape):
    return (tf_shape[3], tf_shape[2], tf_shape[0], tf_shape[1]) if len(tf_shape) == 4 else tuple(reversed(tf_shape))


def _torch_rows(rows: np.ndarray, layers) -> np.ndarray:
    """Zoo rows (TensorFlow order) as modelset rows (torch state-dict order, float32)."""
    parts = []
    for (_, ks, ke, kshape), (_, bs, be, _) in layers:
        kern = _torch_order(rows[:, ks:ke].reshape(len(rows), *kshape))
        parts += [kern.reshape(len(rows), -1), rows[:, bs:be]]
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _write_dataset(w, dataset, name: str, n_classes: int, in_channels: int) -> None:
    if dataset is not None:
        w.write_dataset(dataset)
        return
    import h5py

    g = w.f.create_group("dataset")  # what is known of data that is not here: its name and shape
    g.attrs.update(
        {
            "name": name,
            "n_samples": 0,
            "n_classes": n_classes,
            "input_shape": np.asarray([in_channels, 0, 0]),
            "normalization": "the Small CNN Zoo's: TFDS images averaged to grayscale, pixel / 255 scaled "
            "to [-1, 1] (not stored: the import holds weights and metrics only)",
            "class_names": np.array([str(c) for c in range(n_classes)], dtype=h5py.string_dtype()),
        }
    )
    g.create_dataset("test", data=np.zeros(0, bool))


def _toml(d: dict, prefix: str = "") -> str:
    """A small TOML writer for the preset text an import records (strings, numbers, lists, tables)."""

    def value(v):
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return repr(float(v)) if np.isfinite(v) else ("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = [f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", _toml(v, f"{prefix}{k}.")]
    return "\n".join(lines) + "\n"
