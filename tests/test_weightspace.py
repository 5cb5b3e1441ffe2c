"""WeightSpaceDataset on real built archives: layouts nfn reads unchanged, the stored parts and the
val rule, the protocols' targets, per-layer statistics, and batches read as whole chunks."""

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import modelset
from modelset.errors import ModelsetError
from modelset.protocols import PROTOCOLS
from modelset.splits import VAL_RULE, val_models
from modelset.weightspace import ChunkBatchSampler, WeightSpaceDataset


def test_nfn_layout_is_what_nfn_reads(sweep_archive, opened):
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
    from nfn.layers import HNPLinear, HNPPool

    ms = opened(sweep_archive)
    ds = WeightSpaceDataset(ms, "task_id", "test", "test_acc", layout="nfn")
    (weights, biases), y = next(iter(DataLoader(ds, batch_size=4)))
    assert [tuple(w.shape) for w in weights] == [
        (4, 1, 16, 1, 3, 3),
        (4, 1, 16, 16, 3, 3),
        (4, 1, 16, 16, 3, 3),
        (4, 1, 3, 16),
    ]
    assert [tuple(b.shape) for b in biases] == [(4, 1, 16)] * 3 + [(4, 1, 3)]
    ids = ds.ids[:4]
    for j, i in enumerate(ids):  # the model's own tensors, in layer order
        sd = ms.state_dict(i)
        for w, b, name in zip(weights, biases, ["convs.0", "convs.1", "convs.2", "head"]):
            assert torch.equal(w[j, 0], sd[f"{name}.weight"]) and torch.equal(b[j, 0], sd[f"{name}.bias"])
    np.testing.assert_array_equal(y.numpy(), ms.models.loc[ids, "test_acc"].to_numpy())
    feats = WeightSpaceFeatures(weights, biases)
    spec = network_spec_from_wsfeat(feats)
    assert repr(spec) == repr(ds.network_spec)
    out = HNPPool(spec)(HNPLinear(spec, 1, 2)(feats))  # an nfn layer runs on the batch as it comes
    assert out.shape[0] == 4 and torch.isfinite(out).all()


def test_flat_layout_is_the_archive_rows_at_any_stored_epoch(sweep_archive, opened):
    ms = opened(sweep_archive)
    for epoch in (None, 1):
        ds = WeightSpaceDataset(ms, "task_id", "train", None, epoch=epoch, layout="flat")
        rows = torch.cat(list(ds.loader(batch_size=5))).numpy()
        order = np.concatenate(list(ChunkBatchSampler(ds, 5)))
        np.testing.assert_array_equal(rows, ms.params(ds.ids[order], epoch=epoch))
    with pytest.raises(ModelsetError, match="epoch 2 is not a stored checkpoint"):
        WeightSpaceDataset(ms, epoch=2)


def test_parts_are_the_stored_split_and_val_follows_the_stored_rule(sweep_archive, opened):
    ms = opened(sweep_archive)
    assert {k: ms.h5["splits"].attrs[k] for k in VAL_RULE} == VAL_RULE  # written at build time
    split = ms.split("task_id")
    train, val, test = (WeightSpaceDataset(ms, "task_id", p).ids for p in ("train", "val", "test"))
    assert len(val) and not np.intersect1d(train, val).size
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), split["train"])
    np.testing.assert_array_equal(val, val_models(split["train"], 0.2, 0))
    np.testing.assert_array_equal(test, split["test"])
    np.testing.assert_array_equal(WeightSpaceDataset(ms, "task_id", "train", val=False).ids, split["train"])
    np.testing.assert_array_equal(WeightSpaceDataset(ms, "task_id", "all").ids, ms.models["id"].to_numpy())
    # the epoch split's rows are checkpoints: val takes every checkpoint of its models
    table = ms.checkpoints
    ep_val = WeightSpaceDataset(ms, "epoch", "val", "epoch")
    ep_train = WeightSpaceDataset(ms, "epoch", "train", "epoch")
    assert not np.intersect1d(ep_val.model_ids, ep_train.model_ids).size
    np.testing.assert_array_equal(ep_val.targets, table["epoch"].to_numpy()[ep_val.ids])
    with pytest.raises(ModelsetError, match="no part 'query'.*parts: test, train, val, all"):
        WeightSpaceDataset(ms, "task_id", "query")


def test_targets_are_the_protocols(sweep_archive, opened):
    ms = opened(sweep_archive)
    ids = WeightSpaceDataset(ms, "task_id", "test").ids
    expected = {
        **PROTOCOLS["accuracy"].targets(ms, ids),
        **PROTOCOLS["gap"].targets(ms, ids),
        **PROTOCOLS["hparams"].targets(ms, ids),
        "task": ms.models.loc[ids, "task"].to_numpy(),
    }
    assert set(expected) >= {"test_acc", "gap", "hparam.activation", "hparam.lr", "task"}
    for name, values in expected.items():
        ds = WeightSpaceDataset(ms, "task_id", "test", name, layout="flat")
        got = torch.stack([y for _, y in ds.__getitems__(range(len(ds)))]).numpy()
        np.testing.assert_array_equal(got, values)
    ds = WeightSpaceDataset(ms, "epoch", "test", "epoch", layout="flat")  # checkpoint rows: their epoch
    rows = ms.checkpoints.iloc[ds.ids]
    np.testing.assert_array_equal(ds.targets, rows["epoch"].to_numpy())
    x, y = ds[3]
    k = ms.checkpoint_epochs.index(int(y))
    np.testing.assert_array_equal(
        x.numpy(), ms.h5["architectures/small_cnn/checkpoints"][ms.models.loc[rows["model"].iloc[3], "row"], k]
    )
    with pytest.raises(ModelsetError, match="unknown target 'accuracy'.*available: task, test_acc, gap"):
        WeightSpaceDataset(ms, "task_id", "test", "accuracy")


def test_stats_are_the_training_parts_per_tensor(sweep_archive, opened):
    ms = opened(sweep_archive)
    test = WeightSpaceDataset(ms, "task_id", "test")
    train_ids = WeightSpaceDataset(ms, "task_id", "train").ids
    rows = ms.params(train_ids).astype(np.float64)
    lay = ms.layout("small_cnn")
    for (_, r), (_, s) in zip(lay.iterrows(), test.stats.iterrows()):
        block = rows[:, r["offset"] : r["offset"] + r["size"]]
        assert s["name"] == r["name"]
        np.testing.assert_allclose([s["mean"], s["std"]], [block.mean(), block.std()], rtol=1e-9, atol=1e-12)


def test_batches_read_whole_chunks_never_one_model_at_a_time(sweep_archive, monkeypatch, opened):
    ms = opened(sweep_archive)
    ds = WeightSpaceDataset(ms, "epoch", "train", "epoch", layout="nfn")
    chunk = ms.h5["architectures/small_cnn/checkpoints"].chunks[0]
    reads, calls = [], []
    real_read, real_getitem = h5py.Dataset.__getitem__, WeightSpaceDataset.__getitems__

    def counting_read(self, key):
        reads.append(key)
        return real_read(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting_read)
    monkeypatch.setattr(
        WeightSpaceDataset, "__getitems__", lambda self, i: calls.append(len(i)) or real_getitem(self, i)
    )
    sampler = ChunkBatchSampler(ds, batch_size=8, shuffle=True, seed=3)
    seen = []
    for _, y in DataLoader(ds, batch_sampler=sampler):
        seen.append(len(y))
    assert sum(seen) == len(ds) and calls == seen  # the loader asks for whole batches
    k = ds._k  # each read is one chunk's slab of one checkpoint: far fewer reads than items
    groups = {(int(kk), int(r) // chunk) for kk, r in zip(k, ds._rows)}
    assert len(reads) <= len(groups) + len(seen) < len(ds)
    order = [list(b) for b in ChunkBatchSampler(ds, 8, shuffle=True, seed=3)]
    assert sorted(sum(order, [])) == list(range(len(ds)))  # every item once per epoch
    assert order != [list(b) for b in ChunkBatchSampler(ds, 8, shuffle=True, seed=4)]


def test_workers_open_their_own_file(sweep_archive):
    ds = WeightSpaceDataset(sweep_archive, "task_id", "train", "test_acc", layout="flat")
    a = torch.cat([x for x, _ in ds.loader(batch_size=3)])
    b = torch.cat([x for x, _ in ds.loader(batch_size=3, num_workers=2)])
    assert torch.equal(a, b)


def test_layouts_refuse_what_they_cannot_represent(sweep_archive):
    with pytest.raises(ModelsetError, match="unknown layout 'dws'; available: nfn, flat"):
        WeightSpaceDataset(sweep_archive, layout="dws")
    assert modelset.WeightSpaceDataset is WeightSpaceDataset


def test_metanetwork_notebook_runs():
    """examples/metanetwork.ipynb builds its zoo, trains nfn's invariant NFN through the dataset
    and a DataLoader, and ranks held-out models by predicted accuracy better than chance."""
    import re
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    examples = Path(__file__).resolve().parents[1] / "examples"
    nb = nbformat.read(examples / "metanetwork.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(examples)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    tau = float(re.search(r"held-out models: Kendall tau (-?[\d.]+)", text).group(1))
    assert tau > 0.3, text
