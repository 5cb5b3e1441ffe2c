"""The Small CNN Zoo's format: our export read the way nfn's loader reads it, the round trip
archive -> zoo -> archive, and an import of tiny files written here in the zoo's own form, whose
models ms.model(i) runs as TensorFlow does."""

import gzip
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

import modelset
from modelset.errors import ModelsetError
from modelset.smallcnnzoo import export, import_zoo
from modelset.verify import verify

from .helpers import run_cli


@pytest.fixture(scope="module")
def exported(sweep_archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("scz") / "zoo"
    r = run_cli("export", sweep_archive, "--format", "small-cnn-zoo", out)
    assert r.returncode == 0, r.stderr
    return out


def test_export_reads_as_nfns_loader_reads_it(sweep_archive, exported, opened):
    """nfn's ZooDataset, step by step: weights.npy in the split file's order, metrics.csv.gz, the
    final step's rows, kernels moved from TensorFlow's order by its transposes."""
    ms = opened(sweep_archive)
    data = np.load(exported / "weights.npy")
    order = pd.read_csv(exported / "digits_split.csv", header=None).values.flatten()
    metrics = pd.read_csv(exported / "metrics.csv.gz", compression="gzip").iloc[order]
    data = data[order]
    layout = pd.read_csv(exported / "layout.csv")
    final = (metrics["step"] == metrics["step"].max()).to_numpy()
    metrics, data = metrics[final], data[final]
    weights, biases = [], []
    for _, row in layout.iterrows():
        arr = data[:, row["start_idx"] : row["end_idx"]].reshape(len(data), *eval(row["shape"]))
        if row["varname"].endswith("kernel:0"):
            weights.append(arr.transpose(0, 4, 3, 1, 2) if arr.ndim == 5 else arr.transpose(0, 2, 1))
        else:
            biases.append(arr)
    ids = metrics["modelset.model"].to_numpy()
    for j, i in enumerate(ids):
        sd = ms.state_dict(i)
        for w, b, name in zip(weights, biases, ["convs.0", "convs.1", "convs.2", "head"]):
            np.testing.assert_array_equal(w[j], sd[f"{name}.weight"].numpy())
            np.testing.assert_array_equal(b[j], sd[f"{name}.bias"].numpy())
    np.testing.assert_array_equal(metrics["test_accuracy"].to_numpy(), ms.models.loc[ids, "test_acc"].to_numpy())
    half = int(0.5 * len(ids))  # nfn's cut: the second half is its test set, our held-out models
    assert sorted(ids[half:]) == ms.split("task_id")["test"].tolist()
    assert {
        "config.learning_rate",
        "config.activation",
        "config.w_init",
        "config.l2reg",
        "config.optimizer",
        "modeldir",
        "step",
        "test_accuracy",
        "train_accuracy",
        "test_loss",
        "train_loss",
    } <= set(metrics.columns)
    plain = pd.read_csv(exported / "metrics.csv")
    assert plain.equals(pd.read_csv(exported / "metrics.csv.gz"))


def test_round_trip_gives_back_the_models(sweep_archive, exported, tmp_path, opened):
    out = tmp_path / "back.h5"
    r = run_cli("import", "small-cnn-zoo", exported, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "ms.model(i) reproduces the stored accuracy" in r.stdout
    assert verify(out) == []
    a, b = opened(sweep_archive), opened(out)
    assert a.params().tobytes() == b.params().tobytes()
    for e in a.checkpoint_epochs:
        assert a.params(epoch=e).tobytes() == b.params(epoch=e).tobytes()
    pd.testing.assert_frame_equal(a.models, b.models)  # ids, tasks, seeds, recipe, metrics, checksums
    pd.testing.assert_frame_equal(a.checkpoints, b.checkpoints)
    pd.testing.assert_frame_equal(a.tasks, b.tasks)
    np.testing.assert_array_equal(a.relations, b.relations)
    for part, ids in a.split("task_id").items():  # a 50/50 split travels through nfn's half cut
        np.testing.assert_array_equal(ids, b.split("task_id")[part])
    for i in (0, 5, 11):  # and every model computes what it computed
        x, y = b.task_data(int(b.models.loc[i, "task"]))
        with torch.no_grad():
            acc = (b.model(i)(x).argmax(1) == y).double().mean().item()
        assert acc == pytest.approx(b.models.loc[i, "test_acc"], abs=1e-6)
    # what does not travel: the per-epoch training curves (the zoo keeps checkpoints only)
    assert np.isnan(b.curves("train_loss")).all() and not np.isnan(a.curves("train_loss")).all()
    sums = json.loads(b.attrs["source_sha256"])
    assert sums["weights.npy"] == hashlib.sha256((exported / "weights.npy").read_bytes()).hexdigest()


def test_round_trip_of_an_archive_without_checkpoints(small_archive, tmp_path, opened):
    """One row per model, at its own last epoch: the import keeps final states only."""
    ms = opened(small_archive)
    export(ms, tmp_path / "zoo")
    assert pd.read_csv(tmp_path / "zoo" / "metrics.csv")["step"].tolist() == ms.models["epochs"].tolist()
    import_zoo(tmp_path / "zoo", tmp_path / "back.h5")
    assert verify(tmp_path / "back.h5") == []
    back = opened(tmp_path / "back.h5")
    assert back.checkpoint_epochs == [] and "checkpoints" not in back.h5
    assert back.params().tobytes() == ms.params().tobytes()
    pd.testing.assert_frame_equal(back.models, ms.models)


# -- the zoo's own files, written here ------------------------------------------------------------

STEPS = [0, 1, 86]
SHAPES = [
    (3, 3, 1, 16),
    (16,),
    (3, 3, 16, 16),
    (16,),
    (3, 3, 16, 16),
    (16,),
    (16, 10),
    (10,),
]  # the zoo's CNN, TF order


def _keras_forward(x, kernels, biases, activation):
    """TensorFlow's forward pass of the zoo's CNN in numpy: NHWC images, HWIO kernels, Conv2D at
    stride 2 with Keras's default padding ("valid"), GAP, a dense head."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    h = x
    for kern, b in zip(kernels[:-1], biases[:-1]):
        win = np.lib.stride_tricks.sliding_window_view(h, (3, 3), axis=(1, 2))[:, ::2, ::2]  # N, H', W', C, 3, 3
        h = act(np.einsum("nijcab,abco->nijo", win, kern) + b)
    return h.mean(axis=(1, 2)) @ kernels[-1] + biases[-1]


def _write_zoo(root, runs=5, incomplete=True):
    """A tiny zoo in the release's form: 28x28 inputs, 10 classes, 3 checkpoints per run; the last
    run lost its middle checkpoint (as some of the release's crashed runs did)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, size=64)
    shapes = SHAPES
    names = ["conv2d", "conv2d", "conv2d_1", "conv2d_1", "conv2d_2", "conv2d_2", "dense", "dense"]
    rows, meta = [], []
    for run in range(runs + incomplete):
        act = ["relu", "tanh"][run % 2]
        for step in STEPS:
            if incomplete and run == runs and step == 1:
                continue
            tensors = [rng.normal(scale=0.5, size=s).astype(np.float32) for s in shapes]
            logits = _keras_forward(x, tensors[0::2], tensors[1::2], act)
            rows.append(np.concatenate([t.ravel() for t in tensors]))
            meta.append(
                {
                    "config.activation": act,
                    "config.learning_rate": [0.01, 0.1][run % 2 == 0],
                    "config.w_init": "he_normal",
                    "config.optimizer": "sgd",
                    "config.l2reg": 0.001,
                    "config.train_fraction": [0.5, 1.0][run % 3 == 0],
                    "config.dataset": "mnist",
                    "config.random_seed": 42,
                    "modeldir": f"/zoo/run{run}",
                    "step": step,
                    "test_accuracy": float((logits.argmax(1) == labels).mean()),
                    "test_loss": 2.3,
                    "train_accuracy": 0.1,
                    "train_loss": 2.3,
                }
            )
    os.makedirs(root, exist_ok=True)
    np.save(root / "weights.npy", np.stack(rows))
    with gzip.open(root / "metrics.csv.gz", "wt") as fh:
        pd.DataFrame(meta).to_csv(fh, index=False)
    sizes = [int(np.prod(s)) for s in shapes]
    starts = np.cumsum([0] + sizes[:-1])
    pd.DataFrame(
        {
            "varname": [f"sequential/{n}/{'kernel' if len(s) > 1 else 'bias'}:0" for n, s in zip(names, shapes)],
            "start_idx": starts,
            "end_idx": starts + sizes,
            "shape": [str(s) for s in shapes],
        }
    ).to_csv(root / "layout.csv")  # with the index column, as pandas writes it by default
    pd.Series(rng.permutation(len(rows))).to_csv(root / "mnist_split.csv", index=False, header=False)
    return x, labels, np.stack(rows), pd.DataFrame(meta)


def test_import_of_the_zoos_files_runs_them_as_tensorflow_does(tmp_path, opened):
    x, labels, rows, meta = _write_zoo(tmp_path / "zoo")
    out = tmp_path / "zoo.h5"
    r = run_cli("import", "small-cnn-zoo", tmp_path / "zoo", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 runs: checkpoints other than" in r.stdout and "averaged to grayscale" in r.stdout
    assert run_cli("verify", out).returncode == 0
    ms = opened(out)
    m = ms.models
    assert len(m) == 5 and ms.checkpoint_epochs == STEPS and m["arch"].unique().tolist() == ["small_cnn_zoo_tf"]
    assert m["lr"].tolist() == [0.1, 0.01, 0.1, 0.01, 0.1] and set(m["init"]) == {"kaiming_normal"}
    assert m["weight_decay"].tolist() == [0.002] * 5 and set(m["train_fraction"]) == {0.5, 1.0}
    assert (m["init_seed"] == 42).all() and m["seed"].tolist() == list(range(5))
    assert "lr" in modelset.protocols.grid_factors(ms) and "activation" in modelset.protocols.grid_factors(ms)
    final = meta[meta["step"] == 86].reset_index(drop=True).iloc[:5]
    np.testing.assert_array_equal(m["test_acc"].to_numpy(), final["test_accuracy"].to_numpy())
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for i in range(5):  # every checkpoint: the module's logits are TensorFlow's, so is its accuracy
        for e in STEPS:
            row = rows[(meta["modeldir"] == f"/zoo/run{i}") & (meta["step"] == e)][0]
            t = [s.reshape(sh) for s, sh in zip(np.split(row, np.cumsum([np.prod(s) for s in SHAPES])[:-1]), SHAPES)]
            ref = _keras_forward(x, t[0::2], t[1::2], m.loc[i, "activation"])
            with torch.no_grad():
                got = ms.model(i, epoch=e)(xt).numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
            acc = ms.checkpoints.query("model == @i and epoch == @e")["test_acc"].item()
            assert (got.argmax(1) == labels).mean() == pytest.approx(acc)
    assert len(ms.split("task_id")["train"]) == 2  # nfn's cut of the split file: half, rounded down
    assert "averaged to grayscale" in ms.attrs["import_note"]
    with pytest.raises(ModelsetError, match="small-cnn-zoo:mnist"):  # never modelset's MNIST in their place
        ms.task_data(0)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: os.remove(d / "layout.csv"), "no layout.csv; a Small CNN Zoo directory holds"),
        (lambda d: np.save(d / "weights.npy", np.load(d / "weights.npy")[:-1]), "has 17 rows but weights.npy 16"),
        (
            lambda d: (d / "layout.csv").write_text(
                (d / "layout.csv").read_text().replace("dense/kernel", "dense/gamma")
            ),
            "'sequential/dense/gamma:0' is neither a kernel nor a bias",
        ),
        (lambda d: (d / "mnist_split.csv").write_text("0\n1\n"), "not a permutation of the 17 weights rows"),
        (lambda d: (d / "metrics.csv.gz").write_bytes(b"\x1f\x8b broken"), "cannot read a CSV file"),
        (lambda d: (d / "weights.npy").write_bytes(b"not numpy"), "weights.npy: not a numpy array file"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, damage, message):
    _write_zoo(tmp_path / "zoo")
    damage(tmp_path / "zoo")
    r = run_cli("import", "small-cnn-zoo", tmp_path / "zoo", "--out", tmp_path / "out" / "zoo.h5")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_export_refuses_an_existing_directory_and_leaves_nothing_behind(sweep_archive, tmp_path):
    (tmp_path / "zoo").mkdir()
    r = run_cli("export", sweep_archive, "--format", "small-cnn-zoo", tmp_path / "zoo")
    assert r.returncode == 2 and "exists; give a new directory" in r.stderr
    assert os.listdir(tmp_path) == ["zoo"]
    with pytest.raises(ModelsetError, match="nope: no such directory"):
        import_zoo(tmp_path / "nope", tmp_path / "x.h5")
    assert os.listdir(tmp_path) == ["zoo"]
