"""The leaderboard: score a submitted method on an archive's fixed splits without showing it the
test labels, record a versioned result file, and render the board from all result files.

The method runs in a separate process, in an empty work directory, with a time limit. It gets only
the public file (training models with labels; test models' weights, shuffled, unlabelled). Its
outputs are checked, then scored here with the private key. A rejected method changes nothing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from modelset.errors import ModelsetError

from .evaluate import MethodError, score
from .methods import BUILTIN, check_spec
from .public import make_public, write_public

RESULT_VERSION = 1
HEADLINE = ["task_id.top1", "task_id.top5", "retrieval.map", "retrieval.cmc1", "retrieval.cmc5", "retrieval.cmc10",
            "relation.spearman", "relation.ndcg10", "clustering.nmi", "cross_family.map", "cross_family.cmc1"]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def public_rng(ms) -> np.random.Generator:
    """The public shuffle is fixed per archive, so embeddings computed elsewhere line up."""
    return np.random.default_rng(int(ms.attrs["plan_hash"][:16], 16))


def default_results_dir(archive) -> Path:
    return Path("data") / "leaderboard" / Path(archive).stem


def write_public_file(ms, out) -> None:
    public, _ = make_public(ms, public_rng(ms))
    write_public(out, public)


def _outputs_from_npz(path) -> dict:
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            protocol, _, field = k.partition(".")
            out.setdefault(protocol, {})[field] = z[k]
    return out


def run_isolated(spec: str, seeds: list[int] | None, public: dict, timeout: float,
                 sandbox: str = "auto") -> tuple[dict, list[dict]]:
    """Run the method in a child process on the public file (``seeds`` None: the method's
    default); return what the child reports of it (name, learned, functional, seeds) and its
    outputs per seed.

    The child works in a fresh directory holding only the public file (and a copy of the method's
    file), with a scrubbed environment; with the sandbox it can read nothing else but code.
    """
    base = Path(tempfile.mkdtemp(prefix="modelset-submission-"))
    work, root = base / "work", base / "root"  # root: the sandbox's empty, read-only /
    work.mkdir()
    root.mkdir()
    try:
        write_public(work / "public.h5", public)
        target, sep, name = spec.rpartition(":")
        readable = []
        if target.endswith(".py"):  # the child sees a copy, never the submitter's directory
            shutil.copyfile(target, work / "submitted_method.py")
            spec = f"submitted_method.py:{name}"
        elif sep:
            found = importlib.util.find_spec(target.split(".")[0])
            if found is not None and found.origin:
                top = Path(found.origin).parent if found.submodule_search_locations else Path(found.origin)
                readable.append(str(top))
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        env.update(HOME=str(work), TMPDIR=str(work), MPLCONFIGDIR=str(work),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        cmd = [sys.executable, "-m", "metrics.runner", "public.h5", spec, ",".join(map(str, seeds or [])),
               str(work), sandbox, *readable]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the method and anything it started
            proc.communicate()
            raise MethodError(f"method ran past its time limit of {timeout:g} s; pass --timeout to allow more") from None
        if proc.returncode != 0:
            lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("warning:")]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise MethodError(f"method failed: {why}")
        for line in stderr.splitlines():
            if line.startswith("warning:"):
                print(f"modelset: {line}", file=sys.stderr)
        meta = json.loads((work / "meta.json").read_text())
        return meta, [_outputs_from_npz(work / f"seed-{s}.npz") for s in meta["seeds"]]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def submit(archive, method: str | None = None, embeddings: str | None = None, name: str | None = None,
           seeds: list[int] | None = None, timeout: float = 900, results_dir=None, sandbox: str = "auto") -> dict:
    """Score one method (or precomputed embeddings) and write its result file; returns the result."""
    import modelset

    if (method is None) == (embeddings is None):
        raise ModelsetError("give exactly one of --method or --embeddings")
    with modelset.load(archive) as ms:
        public, key = make_public(ms, public_rng(ms))
        splits = {p: ms.split(p) for p in key}
        t0 = time.time()
        if method is not None:
            check_spec(method)  # fail fast on a malformed spec; the code itself is imported in the child only
            meta, per_seed = run_isolated(method, seeds, public, timeout, sandbox)
            seeds, learned, functional = meta["seeds"], meta["learned"], meta["functional"]
            name = name or next((k for k, v in BUILTIN.items() if method in (k, v)), meta["name"])
        else:
            path = Path(embeddings)
            if not path.is_file():
                raise ModelsetError(f"--embeddings {embeddings!r} not found")
            try:
                with np.load(path, allow_pickle=False) as z:
                    per_seed = [{p: {"embedding": z[p]} for p in z.files}]
            except (OSError, ValueError) as e:
                raise ModelsetError(f"--embeddings {embeddings!r}: not a readable .npz ({e})") from None
            seeds, learned, functional = [0], False, False
            name = name or path.stem
        scores = [score(o, public, key, ms.models, ms.relations, splits) for o in per_seed]
        result = {
            "result_version": RESULT_VERSION,
            "method": name,
            "spec": method or f"embeddings:{Path(embeddings).name}",
            "learned": learned,
            "functional": functional,
            "seeds": seeds,
            "scores": {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                       for k in scores[0] for v in [[s[k] for s in scores]]},
            "archive": Path(archive).name,
            "archive_sha256": file_sha256(archive),
            "preset": ms.attrs["name"],
            "plan_hash": ms.attrs["plan_hash"],
            "versions": {"modelset": modelset.__version__, "python": platform.python_version(),
                         "numpy": np.__version__},
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runtime_s": round(time.time() - t0, 2),
        }
    results_dir = Path(results_dir or default_results_dir(archive))
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = results_dir / f"{name}--{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    render(results_dir)
    return result


def render(results_dir) -> pd.DataFrame:
    """leaderboard.csv and leaderboard.md from every result file (the newest per method)."""
    results_dir = Path(results_dir)
    rows = []
    for f in sorted(results_dir.glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("result_version") != RESULT_VERSION:
            continue
        rows.append({"method": r["method"], "kind": "functional" if r["functional"] else "weights",
                     "seeds": len(r["seeds"]), "time": r["time"],
                     **{k: r["scores"][k]["mean"] for k in HEADLINE if k in r["scores"]},
                     **{f"{k} std": r["scores"][k]["std"] for k in HEADLINE if k in r["scores"]}})
    board = pd.DataFrame(rows)
    if len(board):
        board = (board.sort_values("time").groupby("method").tail(1)
                 .sort_values("retrieval.map", ascending=False).reset_index(drop=True))
    board.to_csv(results_dir / "leaderboard.csv", index=False)
    shown = [k for k in HEADLINE if k in board.columns]  # cross_family only for mixed zoos
    lines = ["| method | kind | seeds | " + " | ".join(shown) + " |", "|---" * (3 + len(shown)) + "|"]
    for r in board.to_dict("records"):
        cells = [f"{r[k]:.3f} ± {r[k + ' std']:.3f}" if r["seeds"] > 1 else f"{r[k]:.3f}" for k in shown]
        lines.append(f"| {r['method']} | {r['kind']} | {r['seeds']} | " + " | ".join(cells) + " |")
    (results_dir / "leaderboard.md").write_text("\n".join(lines) + "\n")
    return board
