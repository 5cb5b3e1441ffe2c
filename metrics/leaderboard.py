"""The leaderboard: score a submitted method on an archive's fixed splits without showing it the
test labels, record a versioned result file, and render the board from all result files.

The method runs in a separate, sandboxed process, in an empty work directory, with a time limit. It
gets only the public file (training models with labels; test models' weights, shuffled, unlabelled;
the probe inputs only if submitted as functional). The scoring process alone decides what a result
says: the name, the kind and the seeds; from the child it takes nothing but one array file per seed
it asked for, checked, then scored here with the private key. A rejected method changes nothing.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from modelset.atomic import atomic_file, write_text
from modelset.datasets import DATA_ENV
from modelset.errors import ModelsetError
from modelset.protocols import HEADLINE, PROTOCOLS, REQUIRED

from .evaluate import MethodError, check_outputs, default_seeds, score
from .methods import NAME, Submission, check_name, check_spec, submission
from .public import make_public, write_public
from .runner import UNCONFINED

RESULT_VERSION = 3  # v2: the scoring side's kind, the code's record, confinement; v3: property protocols
BOARDS = {"relations": "Task relations", "properties": "Properties, predicted from the representation"}
KINDS = {"weights": "Weights only", "functional": "Functional: the methods run the models on probe inputs"}


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


def write_public_file(ms, out, functional: bool = False, data_root=None) -> None:
    public, _ = make_public(ms, public_rng(ms), functional, data_root)
    with atomic_file(out) as tmp:
        write_public(tmp, public)


def _printable(text: str, limit: int = 300) -> str:
    """A child's text as one safe line: it reaches the user's terminal, nothing else."""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def _top_location(target: str) -> Path | None:
    """Where module ``target``'s top-level package (a directory) or module (a file) lives, found
    without importing anything."""
    try:
        spec = importlib.util.find_spec(target.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin and os.path.isfile(spec.origin) else None


def _module_file(target: str, top: Path) -> Path | None:
    """The source file of module ``target`` under its top-level location ``top``."""
    rest = target.split(".")[1:]
    if top.is_file():
        return None if rest else top
    base = top.joinpath(*rest)
    return next((f for f in [*([base.with_suffix(".py")] if rest else []), base / "__init__.py"] if f.is_file()), None)


def _module_version(target: str) -> str | None:
    dists = importlib.metadata.packages_distributions().get(target.split(".")[0], [])
    try:
        return importlib.metadata.version(dists[0]) if dists else None
    except importlib.metadata.PackageNotFoundError:
        return None


def stage_code(spec: str, work: Path) -> tuple[str, list[str], dict]:
    """(the spec the child imports, directories it may also read, the record of the code).

    A file is copied into the work directory, so the child never sees the submitter's directory,
    and hashed as copied: the record is of the bytes that ran. A module is recorded by its
    distribution's version and its source file's sha256.
    """
    target, name = check_spec(spec)
    if target.endswith(".py"):
        data = Path(target).read_bytes()
        (work / "submitted_method.py").write_bytes(data)
        return f"submitted_method.py:{name}", [], {"file": Path(target).name,
                                                   "sha256": hashlib.sha256(data).hexdigest()}
    top = _top_location(target)
    source = _module_file(target, top) if top else None
    return spec, [str(top)] if top else [], {"module": target, "version": _module_version(target),
                                             "sha256": file_sha256(source) if source else None}


def _outputs_from_npz(path) -> dict:
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            protocol, _, field = k.partition(".")
            out.setdefault(protocol, {})[field] = z[k]
    return out


def read_outputs(outputs_dir: Path, seeds: list[int]) -> list[dict]:
    """The outputs of exactly the seeds asked for, in their order: a missing or extra file rejects."""
    if not stat.S_ISDIR(os.lstat(outputs_dir).st_mode):  # e.g. a symlink to files elsewhere
        raise MethodError("method replaced its outputs directory")
    expected = [f"seed-{s}.npz" for s in seeds]
    found = sorted(os.listdir(outputs_dir))
    missing = [f for f in expected if f not in found]
    extra = [_printable(f, 60) for f in found if f not in expected]
    if missing or extra:
        why = "; ".join(f"{what} {', '.join(files[:10])}"
                        for what, files in (("missing", missing), ("unexpected", extra)) if files)
        raise MethodError(f"method outputs are not one file per seed asked for ({','.join(map(str, seeds))}): {why}")
    per_seed = []
    for f in expected:
        if not stat.S_ISREG(os.lstat(outputs_dir / f).st_mode):
            raise MethodError(f"method output {f} is not a regular file")
        try:
            per_seed.append(_outputs_from_npz(outputs_dir / f))
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise MethodError(f"method output {f} is not a readable .npz ({_printable(str(e), 100)})") from None
    return per_seed


def run_isolated(sub: Submission, seeds: list[int], public: dict, timeout: float, sandbox: str = "auto",
                 data_root=None) -> tuple[list[dict], dict, bool]:
    """Run ``sub`` in a child process on the public file for ``seeds``: (its outputs per seed, the
    record of its code, whether it ran confined).

    The child works in a fresh directory holding only the public file (and a copy of the method's
    file), with a scrubbed environment; with the sandbox it can read nothing else but code, and no
    dataset: not the data directory (``data_root``, else $MODELSET_DATA), nor any the sandbox knows.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ModelsetError(f"--timeout must be > 0 seconds, got {timeout!r}")
    base = Path(tempfile.mkdtemp(prefix="modelset-submission-"))
    work, root = base / "work", base / "root"  # root: the sandbox's empty, read-only /
    (work / "outputs").mkdir(parents=True)
    root.mkdir()
    try:
        write_public(work / "public.h5", public)
        spec, readable, code = stage_code(sub.spec, work)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        env.update(HOME=str(work), TMPDIR=str(work), MPLCONFIGDIR=str(work),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        hidden = [d for d in (data_root or os.environ.get(DATA_ENV),) if d]
        cmd = [sys.executable, "-m", "metrics.runner", "public.h5", spec, ",".join(map(str, seeds)),
               str(work), sandbox, os.pathsep.join(readable), os.pathsep.join(hidden)]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the method and anything it started
            proc.communicate()
            raise MethodError(f"method ran past its time limit of {timeout:g} s; pass --timeout to allow more") from None
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        unconfined = [ln for ln in lines if ln.startswith(UNCONFINED)]
        if proc.returncode != 0:
            why = ([ln for ln in lines if ln not in unconfined] or [f"exit code {proc.returncode}"])[-1]
            raise MethodError(f"method failed: {_printable(why)}")
        if unconfined:  # printed by the runner before the method's code loads
            print(f"modelset: {_printable(unconfined[0])}", file=sys.stderr)
        return read_outputs(work / "outputs", seeds), code, sandbox != "off" and not unconfined
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check_seeds(seeds: list[int]) -> list[int]:
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ModelsetError(f"--seeds {','.join(map(str, seeds))!r}: give distinct non-negative integers, e.g. 0,1,2")
    return list(seeds)


def _read_embeddings(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {p: {"embedding": z[p]} for p in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ModelsetError(f"--embeddings {str(path)!r}: not a readable .npz ({e})") from None


def _embeddings_submission(embeddings: str, name, seeds, functional: bool, learned: bool) -> Submission:
    path = Path(embeddings)
    if not path.is_file():
        raise ModelsetError(f"--embeddings {embeddings!r} not found")
    if seeds is not None or learned:
        raise ModelsetError("--seeds and --learned go with --method; embeddings computed elsewhere are one result")
    return Submission(f"embeddings:{path.name}", check_name(name if name is not None else path.stem), False, functional)


def _result(ms, archive, sub: Submission, seeds, code: dict, confined: bool, scores: list[dict], runtime: float,
            now: datetime) -> dict:
    import modelset

    return {
        "result_version": RESULT_VERSION,
        "method": sub.name,
        "spec": sub.spec,
        "kind": sub.kind,
        "learned": sub.learned,
        "seeds": seeds,
        "code": code,
        "confined": confined,
        "scores": {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                   for k in scores[0] for v in [[s[k] for s in scores]]},
        "archive": Path(archive).name,
        "archive_sha256": file_sha256(archive),
        "preset": ms.attrs["name"],
        "plan_hash": ms.attrs["plan_hash"],
        "versions": {"modelset": modelset.__version__, "python": platform.python_version(), "numpy": np.__version__},
        "time": now.isoformat(timespec="microseconds"),
        "runtime_s": round(runtime, 2),
    }


def submit(archive, method: str | None = None, embeddings: str | None = None, name: str | None = None,
           seeds: list[int] | None = None, functional: bool = False, learned: bool = False, timeout: float = 900,
           results_dir=None, sandbox: str = "auto", data_root=None) -> dict:
    """Score one method (or precomputed embeddings) and write its result file; returns the result.

    Name, kind and seeds come from the arguments and the built-in registry (``methods.submission``),
    never from the method. Embeddings computed elsewhere are one seed, of the kind the submitter says.
    """
    import modelset

    if (method is None) == (embeddings is None):
        raise ModelsetError("give exactly one of --method or --embeddings")
    if method is not None:
        sub = submission(method, name, functional, learned)
        seeds = check_seeds(seeds) if seeds is not None else default_seeds(sub.learned)
    else:
        sub, seeds = _embeddings_submission(embeddings, name, seeds, functional, learned), [0]
    results_dir = Path(results_dir or default_results_dir(archive))
    with modelset.load(archive) as ms:
        # Scoring embeddings needs no probe: only a method that will run is given one.
        public, key = make_public(ms, public_rng(ms), sub.functional and method is not None, data_root)
        t0 = time.time()
        if method is not None:
            per_seed, code, confined = run_isolated(sub, seeds, public, timeout, sandbox, data_root)
        else:
            path = Path(embeddings)
            per_seed, code, confined = [_read_embeddings(path)], {"file": path.name, "sha256": file_sha256(path)}, False
        scores = [score(o, public, key, ms) for o in per_seed]
        now = datetime.now(timezone.utc)
        result = _result(ms, archive, sub, seeds, code, confined, scores, time.time() - t0, now)
    # sub.name matches methods.NAME (no separator, no leading dot): the file stays in results_dir
    write_text(results_dir / f"{sub.name}--{now.strftime('%Y%m%dT%H%M%S%fZ')}.json", json.dumps(result, indent=1))
    render(results_dir)
    return result


def plot(archive, method: str, out, functional: bool = False, timeout: float = 900, sandbox: str = "auto",
         data_root=None) -> None:
    """A PNG of a method on the retrieval test models (unseen tasks), run as a submission is: in the
    sandboxed child, on the public file, seed 0."""
    import modelset

    from .plots import plot_method

    sub = submission(method, functional=functional)
    with modelset.load(archive) as ms:
        public, key = make_public(ms, public_rng(ms), sub.functional, data_root, splits=("retrieval",))
        per_seed, _, _ = run_isolated(sub, [0], public, timeout, sandbox, data_root)
        sim = check_outputs(per_seed[0], public)["retrieval"]
        labels = ms.models.loc[key["retrieval"], "task"].to_numpy()
        with atomic_file(out) as tmp:
            plot_method(sim, labels, ms.relations, sub.name, tmp)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_result(r) -> bool:
    """Whether parsed JSON ``r`` is a result as this version writes it: only those reach the board."""
    try:
        n = len(r["seeds"])
        datetime.fromisoformat(r["time"])
        return bool(r["result_version"] == RESULT_VERSION and isinstance(r["method"], str)
                    and NAME.fullmatch(r["method"]) and r["kind"] in KINDS and isinstance(r["seeds"], list)
                    and n > 0 and all(type(s) is int for s in r["seeds"]) and isinstance(r["code"], dict)
                    and isinstance(r["confined"], bool) and isinstance(r["scores"], dict)
                    and all(k in r["scores"] for k in REQUIRED)
                    and all(_number(v["mean"]) and _number(v["std"]) and isinstance(v["values"], list)
                            and len(v["values"]) == n and all(map(_number, v["values"]))
                            for v in r["scores"].values()))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _load_result(f: Path):
    try:
        r = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return r if is_result(r) else None


def _board_row(f: Path, r: dict) -> dict:
    sc = r["scores"]
    return {"kind": r["kind"], "method": r["method"], "seeds": len(r["seeds"]), "confined": r["confined"],
            "time": r["time"], "result": f.name, "code_sha256": r["code"].get("sha256"),
            **{k: sc[k]["mean"] for k in HEADLINE if k in sc},
            **{f"{k} std": sc[k]["std"] for k in HEADLINE if k in sc}}


def _table(part: pd.DataFrame, board: str) -> list[str]:
    shown = [k for k in HEADLINE if PROTOCOLS[k.partition(".")[0]].board == board
             and k in part.columns and part[k].notna().any()]
    lines = ["| rank | method | seeds | " + " | ".join(shown) + " |", "|---" * (3 + len(shown)) + "|"]
    for r in part.to_dict("records"):
        cells = [f"{r[k]:.3f} ± {r[k + ' std']:.3f}" if r["seeds"] > 1 else f"{r[k]:.3f}" for k in shown]
        method = r["method"] + ("" if r["confined"] else " (unconfined)")  # the sandbox's promises do not hold
        lines.append(f"| {r['rank']} | {method} | {r['seeds']} | " + " | ".join(cells) + " |")
    return lines


def render(results_dir) -> pd.DataFrame:
    """leaderboard.csv and leaderboard.md from every result file (the newest per method and kind),
    each kind ranked apart by retrieval mAP, its task-relation and property scores in two tables. Files that are not results are named in one warning."""
    results_dir = Path(results_dir)
    rows, ignored = [], []
    for f in sorted(results_dir.glob("*.json")):
        r = _load_result(f)
        if r is None:
            ignored.append(_printable(f.name, 80))
        else:
            rows.append(_board_row(f, r))
    if ignored:
        print(f"modelset: warning: {len(ignored)} file(s) in {results_dir} are not results (result format "
              f"v{RESULT_VERSION}), not shown: {', '.join(ignored)}", file=sys.stderr)
    board = pd.DataFrame(columns=["kind", "rank", "method", "seeds", *REQUIRED])
    if rows:
        board = pd.DataFrame(rows).sort_values("time").groupby(["kind", "method"]).tail(1)
        board["kind"] = pd.Categorical(board["kind"], list(KINDS))
        board = board.sort_values(["kind", "retrieval.map"], ascending=[True, False]).reset_index(drop=True)
        board.insert(1, "rank", board.groupby("kind", observed=True)["retrieval.map"]
                     .rank(ascending=False, method="min").astype(int))
    write_text(results_dir / "leaderboard.csv", board.to_csv(index=False))
    lines = []
    for kind, title in KINDS.items():
        part = board[board["kind"] == kind]
        if len(part):
            lines += [f"## {title}", ""]
            for board_name, board_title in BOARDS.items():
                lines += [f"### {board_title}", "", *_table(part, board_name), ""]
    write_text(results_dir / "leaderboard.md", "\n".join(lines) if lines else "No results yet.\n")
    return board
