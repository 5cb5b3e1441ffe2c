"""Reading a method's arrays safely: every .npz member's name, dtype and shape is checked from its
header against what the protocol expects, and its size against that shape, before any array is
loaded. A small compressed file cannot expand past what the protocol allows, and no pickle loads.
"""

from __future__ import annotations

import math
import os
import re
import zipfile

import numpy as np

from modelset.protocols import SPLITS

MAX_DIM = 16384  # columns of an embedding
MAX_MEMBERS = 4096
_HEADER = 65536  # bytes an .npy header may take (numpy's own cap is 10000)
# seed-<s>/<split>.<field>, as metrics.runner writes them
FUNCTION = {"embedding": "embed()", "similarity": "similarity()", "scores": "predict_scores()", "classes": "classes_"}
RUN_KEY = re.compile(
    r"seed-(\d{1,9})/([A-Za-z_]+)\.(embedding|similarity|scores|classes|predict\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)"
)


class OutputError(ValueError):
    pass


def _rows(public: dict, split: str) -> tuple[int, int, int]:
    """(rows the method represents, test rows, training rows) of a split."""
    train, test = public[split]
    n = len(train) + len(test) if SPLITS[split].sees == "all" else len(test)
    return n, len(test), len(train)


def expected_shape(public: dict, split: str, field: str) -> tuple:
    """The shape ``field`` of ``split`` must have; an int bound in a list is a free size up to it."""
    if split not in public:
        raise OutputError(f"split {split!r} is not one of the public file's ({', '.join(public)})")
    n, n_test, n_train = _rows(public, split)
    if field == "embedding":
        return (n, [MAX_DIM])
    if field == "similarity":
        return (n, n)
    if field == "scores":
        return (n_test, [max(n_train, 1)])
    if field == "classes":
        return ([max(n_train, 1)],)
    target = field.partition(".")[2]
    if target not in (public[split][0].targets or {}):
        raise OutputError(f"{split} has no public target {target!r} to predict")
    return (n_test,)


def _fits(shape: tuple, template: tuple) -> bool:
    return len(shape) == len(template) and all(
        (1 <= s <= t[0]) if isinstance(t, list) else s == t for s, t in zip(shape, template)
    )


def _shown(template: tuple) -> str:
    return "(" + ", ".join(f"<= {t[0]}" if isinstance(t, list) else str(t) for t in template) + ")"


def _bytes(template: tuple) -> int:
    return math.prod(t[0] if isinstance(t, list) else t for t in template) * 8


def read_npz(path, expect, label=lambda name: name) -> dict:
    """{member name without .npy: array}, each checked by ``expect(name) -> shape template`` (which
    raises OutputError for a name it does not expect) before it is loaded; ``label(name)`` names a
    member in messages. Raises OutputError."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_MEMBERS:
                raise OutputError(f"{len(infos)} arrays, more than the {MAX_MEMBERS} any protocol asks for")
            checked = []
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else None
                if name is None:
                    raise OutputError(f"{info.filename[:80]!r} is not an .npy array")
                template = expect(name)
                name_ = label(name)
                if info.file_size > _bytes(template) + _HEADER:
                    raise OutputError(
                        f"{name_}: {info.file_size} bytes, more than an array of shape {_shown(template)} takes"
                    )
                with z.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh, max_header_size=_HEADER)
                    header = fh.tell()
                if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
                    raise OutputError(f"{name_}: dtype {dtype} is not a plain number")
                if not _fits(shape, template):
                    raise OutputError(f"{name_}: shape {shape}, expected {_shown(template)}")
                if info.file_size != header + math.prod(shape) * dtype.itemsize:
                    raise OutputError(f"{name_}: {info.file_size} bytes do not match its header's shape {shape}")
                checked.append((name, info))
            out = {}
            for name, info in checked:
                with z.open(info) as fh:
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
            return out
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"not a readable .npz ({str(e)[:100]})") from None


def read_run(path, public: dict, seeds: list[int], max_bytes: int) -> list[dict]:
    """A run's outputs (metrics.runner), per seed asked for, in order: {split: {field: array}}."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise OutputError(f"{size} bytes, more than the {max_bytes} its protocols' arrays can take")
    if size == 0:
        raise OutputError("no outputs written")

    def expect(name):
        m = RUN_KEY.fullmatch(name)
        if m is None:
            raise OutputError(f"unexpected array {name[:80]!r}")
        if int(m[1]) not in seeds:
            raise OutputError(f"unexpected seed-{m[1]} (seeds asked for: {','.join(map(str, seeds))})")
        return expected_shape(public, m[2], m[3])

    def label(name):
        m = RUN_KEY.fullmatch(name)
        field = FUNCTION.get(m[3]) or f"predict_property(view, {m[3].partition('.')[2]!r})"
        return f"{m[2]}: {field} of seed {m[1]}"

    per_seed = {s: {} for s in seeds}
    for name, a in read_npz(path, expect, label).items():
        m = RUN_KEY.fullmatch(name)
        per_seed[int(m[1])].setdefault(m[2], {})[m[3]] = a
    missing = [f"seed-{s}" for s, o in per_seed.items() if not o]
    if missing:
        raise OutputError(f"missing {', '.join(missing)} (seeds asked for: {','.join(map(str, seeds))})")
    return [per_seed[s] for s in seeds]


def max_run_bytes(public: dict, seeds: list[int]) -> int:
    """The largest outputs file a run can need: every field of every split, per seed."""
    per_seed = 0
    for split, (train, _) in public.items():
        fields = ["embedding", "similarity", "scores", "classes", *(f"predict.{t}" for t in train.targets or {})]
        per_seed += sum(_bytes(expected_shape(public, split, f)) + _HEADER for f in fields)
    return per_seed * len(seeds) + (1 << 20)


def read_embeddings(path, public: dict) -> dict:
    """A user's --embeddings file: one (n, d) array per split, checked as a run's outputs are."""
    return {
        split: {"embedding": a}
        for split, a in read_npz(path, lambda name: expected_shape(public, name, "embedding")).items()
    }
