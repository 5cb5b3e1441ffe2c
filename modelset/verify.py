"""Checking an archive against format v1: schema, cross-references and every parameter checksum."""
from __future__ import annotations

import numpy as np

from .archive import CURVES, Archive, param_checksum

REQUIRED_ATTRS = ("format", "format_version", "name", "preset", "dataset", "seed", "created", "plan_hash",
                  "n_models", "modelset_version", "torch_version", "python_version")
REQUIRED_NODES = ("dataset", "dataset/test", "tasks", "tasks_classes", "relations", "architectures", "models",
                  "curves", "splits")
MODEL_COLUMNS = ("id", "arch", "family", "row", "task", "seed", "train_loss", "train_acc", "test_loss",
                 "test_acc", "checksum")


def verify(path) -> list[str]:
    """Every problem found, as a list of one-line messages; empty means the archive is sound.

    Raises ModelsetError when the file cannot be opened as a modelset archive at all.
    """
    with Archive(path) as ms:
        f = ms.h5
        problems = [f"missing root attribute {a!r}" for a in REQUIRED_ATTRS if a not in f.attrs]
        problems += [f"missing /{n}" for n in REQUIRED_NODES if n not in f]
        if problems:
            return problems
        try:
            models, tasks = ms.models, ms.tasks
        except Exception as e:  # a corrupt table is a finding, not a crash
            return [f"cannot read the models or tasks table: {e}"]
        problems += [f"/models lacks column {c!r}" for c in MODEL_COLUMNS if c not in models.columns]
        if problems:
            return problems
        n, t = len(models), len(tasks)
        if int(f.attrs["n_models"]) != n:
            problems.append(f"root n_models={f.attrs['n_models']} but /models has {n} rows")
        if not np.array_equal(models["id"].to_numpy(), np.arange(n)):
            problems.append("/models ids are not 0..N-1 in order")
        if f["relations"].shape != (t, t):
            problems.append(f"/relations has shape {f['relations'].shape}, expected ({t}, {t})")
        elif not np.allclose(ms.relations, ms.relations.T):
            problems.append("/relations is not symmetric")
        if f["tasks_classes"].shape[0] != t:
            problems.append("/tasks_classes does not have one row per task")
        bad_task = models.loc[~models["task"].between(0, t - 1), "id"]
        problems += [f"model {i}: task out of range" for i in bad_task]
        for name in CURVES:
            if name not in f["curves"] or f["curves"][name].shape[0] != n:
                problems.append(f"/curves/{name} missing or not one row per model")
        for name, parts in f["splits"].items():
            for part, ids in parts.items():
                ids = ids[()]
                if len(ids) and (ids.min() < 0 or ids.max() >= n):
                    problems.append(f"/splits/{name}/{part} refers to a model id outside 0..{n - 1}")
        for arch, group in models.groupby("arch"):
            if arch not in f["architectures"] or "params" not in f["architectures"][arch]:
                problems.append(f"models refer to architecture {arch!r}, which has no /architectures/{arch}/params")
                continue
            params = f[f"architectures/{arch}/params"]
            layout = ms.layout(arch)
            if int(layout["size"].sum()) != params.shape[1]:
                problems.append(f"/architectures/{arch}: layout covers {layout['size'].sum()} values, "
                                f"params rows have {params.shape[1]}")
            rows = group["row"].to_numpy()
            if sorted(rows) != list(range(params.shape[0])):
                problems.append(f"/architectures/{arch}: model rows do not map one-to-one onto the "
                                f"{params.shape[0]} parameter rows")
                continue
            try:
                data = params[()]
            except OSError as e:
                problems.append(f"/architectures/{arch}/params cannot be read: {e}")
                continue
            for mid, row, checksum in zip(group["id"], rows, group["checksum"]):
                if param_checksum(data[row]) != checksum:
                    problems.append(f"model {mid}: parameter checksum mismatch (row {row} of {arch})")
            for fam, fgroup in group[group["family"] != "dense"].groupby("family"):
                node = f"architectures/{arch}/families/{fam}/params"
                if node not in f:
                    problems.append(f"models of family {fam!r} have no /{node}")
                    continue
                fdata = f[node][()]
                frows = fgroup["family_row"].to_numpy()
                if sorted(frows) != list(range(fdata.shape[0])):
                    problems.append(f"/{node}: model rows do not map one-to-one onto its {fdata.shape[0]} rows")
                    continue
                for mid, row, checksum in zip(fgroup["id"], frows, fgroup["family_checksum"]):
                    if param_checksum(fdata[row]) != checksum:
                        problems.append(f"model {mid}: {fam} parameter checksum mismatch (row {row})")
        return problems
