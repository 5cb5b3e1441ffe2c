"""Checking an archive against format v2: schema, cross-references and every parameter checksum,
checkpoints included."""

from __future__ import annotations

import numpy as np

from .archive import Archive, layout_problem, read_layout, struct_to_table
from .schema import CHECKPOINT_EPOCHS, CHECKPOINT_TABLE_COLUMNS, CURVES, REQUIRED_MODEL_COLUMNS, param_checksum

REQUIRED_ATTRS = (
    "format",
    "format_version",
    "name",
    "preset",
    "dataset",
    "seed",
    "created",
    "plan_hash",
    "n_models",
    "modelset_version",
    "torch_version",
    "python_version",
)
REQUIRED_NODES = (
    "dataset",
    "dataset/test",
    "tasks",
    "tasks_classes",
    "relations",
    "architectures",
    "models",
    "curves",
    "splits",
)


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
        problems += [f"/models lacks column {c!r}" for c in REQUIRED_MODEL_COLUMNS if c not in models.columns]
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
        from .protocols import SPLITS, required_splits

        problems += [
            f"/splits/{name} missing: every zoo of {t} task(s) stores it"
            for name in required_splits(t)
            if name not in f["splits"]
        ]
        for name, parts in f["splits"].items():
            if name not in SPLITS:
                problems.append(f"/splits/{name} is not a split of this version ({', '.join(SPLITS)})")
                continue
            rows = SPLITS[name].rows  # what the ids index: models, or rows of /checkpoints
            size = n if rows == "models" else (len(f["checkpoints"]) if "checkpoints" in f else 0)
            for part, ids in parts.items():
                ids = ids[()]
                if len(ids) and (ids.min() < 0 or ids.max() >= size):
                    have = f"outside 0..{size - 1}" if size else "but the archive has none"
                    problems.append(f"/splits/{name}/{part} refers to a {rows[:-1]} row {have}")
        from .families import FAMILIES

        unknown = sorted(set(models["family"]) - set(FAMILIES))
        problems += [f"models of unknown family {fam!r} (known: {', '.join(FAMILIES)})" for fam in unknown]
        for arch, group in models.groupby("arch"):
            node = f"architectures/{arch}"
            problems += _check_rows(
                f, node, ms.layout(arch) if f"{node}/layout" in f else None, group, "row", "checksum", arch
            )
            own = group[[FAMILIES.get(fam, FAMILIES["dense"]).own_params for fam in group["family"]]]
            for fam, fgroup in own.groupby("family"):
                fnode = f"{node}/families/{fam}"
                layout = read_layout(f[f"{fnode}/layout"]) if f"{fnode}/layout" in f else None
                problems += _check_rows(f, fnode, layout, fgroup, "family_row", "family_checksum", f"{fam} of {arch}")
        if CHECKPOINT_EPOCHS in f.attrs or "checkpoints" in f:
            problems += _check_checkpoints(f, models, FAMILIES)
        return problems


def _check_checkpoints(f, models, families) -> list[str]:
    """The root list of epochs, the /checkpoints table (K rows per model, in order) and every
    checkpoint row of every parameter matrix against its checksum."""
    if CHECKPOINT_EPOCHS not in f.attrs or "checkpoints" not in f:
        return [f"checkpoints are incomplete: root attribute {CHECKPOINT_EPOCHS!r} and /checkpoints go together"]
    epochs = np.asarray(f.attrs[CHECKPOINT_EPOCHS])
    if epochs.ndim != 1 or not len(epochs) or epochs.dtype.kind not in "iu" or (np.diff(epochs) <= 0).any():
        return [f"root {CHECKPOINT_EPOCHS} must be increasing whole epochs, got {epochs.tolist()}"]
    try:
        table = struct_to_table(f["checkpoints"][()])
    except Exception as e:
        return [f"cannot read /checkpoints: {e}"]
    missing = [c for c in CHECKPOINT_TABLE_COLUMNS if c not in table.columns]
    if missing:
        return [f"/checkpoints lacks column {c!r}" for c in missing]
    n, k = len(models), len(epochs)
    if (
        len(table) != n * k
        or not (table["model"].to_numpy() == np.repeat(models["id"].to_numpy(), k)).all()
        or not (table["epoch"].to_numpy() == np.tile(epochs, n)).all()
    ):
        return [f"/checkpoints must hold {k} rows per model (epochs {epochs.tolist()}), by model id then epoch"]
    problems = []
    position = {mid: i for i, mid in enumerate(models["id"])}  # a model's rows of the table: its position
    for arch, group in models.groupby("arch"):
        node = f"architectures/{arch}"
        group = group.assign(position=[position[m] for m in group["id"]])
        problems += _check_checkpoint_rows(f, node, group, "row", table["checksum"], k)
        own = group[[families.get(fam, families["dense"]).own_params for fam in group["family"]]]
        for fam, fgroup in own.groupby("family"):
            problems += _check_checkpoint_rows(
                f, f"{node}/families/{fam}", fgroup, "family_row", table["family_checksum"], k
            )
    return problems


def _check_checkpoint_rows(f, node: str, group, row_col: str, checksums, k: int) -> list[str]:
    if f"{node}/checkpoints" not in f or f"{node}/params" not in f:
        return [f"/{node}/checkpoints missing"]
    data, params = f[f"{node}/checkpoints"], f[f"{node}/params"]
    if data.shape != (params.shape[0], k, params.shape[1]):
        return [f"/{node}/checkpoints has shape {data.shape}, expected {(params.shape[0], k, params.shape[1])}"]
    try:
        data = data[()]
    except OSError as e:
        return [f"/{node}/checkpoints cannot be read: {e}"]
    sums = checksums.to_numpy().reshape(-1, k)  # row i: the i-th model of /models
    return [
        f"model {mid}: checkpoint checksum mismatch (epoch index {j}, row {row} of /{node}/checkpoints)"
        for mid, pos, row in zip(group["id"], group["position"], group[row_col])
        for j in range(k)
        if param_checksum(data[row, j]) != sums[pos, j]
    ]


def _check_rows(f, node: str, layout, group, row_col: str, checksum_col: str, what: str) -> list[str]:
    """The checks every parameter matrix gets (an architecture's effective weights, a family's own
    parameters): it exists and is readable, its layout covers each row, the models' rows map
    one-to-one onto its rows, and every row matches its model's checksum."""
    if f"{node}/params" not in f:
        return [f"models of {what} have no /{node}/params"]
    params = f[f"{node}/params"]
    if layout is None:
        return [f"/{node} has no layout"]
    if len(params.shape) != 2 or int(layout["size"].sum()) != params.shape[1]:
        return [f"/{node}: layout covers {layout['size'].sum()} values, params rows have shape {params.shape}"]
    problem = layout_problem(layout, params.shape[1])
    if problem:
        return [f"/{node}: {problem}"]
    rows = group[row_col].to_numpy()
    if sorted(rows) != list(range(params.shape[0])):
        return [f"/{node}: model rows do not map one-to-one onto the {params.shape[0]} parameter rows"]
    try:
        data = params[()]
    except OSError as e:
        return [f"/{node}/params cannot be read: {e}"]
    return [
        f"model {mid}: parameter checksum mismatch (row {row} of {what})"
        for mid, row, checksum in zip(group["id"], rows, group[checksum_col])
        if param_checksum(data[row]) != checksum
    ]
