"""The default benchmark itself, built exactly as `make modelset` builds it."""

import os
from pathlib import Path

import nbformat
import numpy as np
import torch
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_every_model_really_learns(digits500, opened):
    acc = opened(digits500).models["test_acc"]
    assert len(acc) == 500
    assert acc.mean() >= 0.95, acc.describe()
    assert acc.min() >= 0.85, acc.nsmallest(5)


def test_protocol_splits_have_the_modelset500_shape(digits500, opened):
    ms = opened(digits500)
    m = ms.models
    tid = ms.split("task_id")
    assert len(tid["train"]) == 300 and len(tid["test"]) == 200
    assert (m.loc[tid["train"]].groupby("task").size() == 6).all()
    ret = ms.split("retrieval")
    assert m.loc[ret["train"], "task"].nunique() == 30
    unseen = m.loc[np.concatenate([ret["query"], ret["gallery"]])]
    assert unseen["task"].nunique() == 20 and len(ret["query"]) == len(ret["gallery"]) == 100


def test_rebuilt_models_reproduce_their_stored_accuracy(digits500, opened):
    ms = opened(digits500)
    for model_id in [0, 137, 499]:
        row = ms.models.loc[model_id]
        x, y = ms.task_data(row.task, "test")
        with torch.no_grad():
            acc = (ms.model(model_id)(x).argmax(1) == y).float().mean().item()
        assert acc == row.test_acc


def test_quickstart_notebook_runs(digits500):
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    os.environ["MODELSET_ARCHIVE"] = str(digits500)  # inherited by the kernel
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
        ).execute()
    finally:
        del os.environ["MODELSET_ARCHIVE"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the relation plot rendered
