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
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from modelset.atomic import atomic_file, write_text
from modelset.datasets import DATA_ENV
from modelset.errors import ModelsetError
from modelset.protocols import HEADLINE, PROTOCOLS, RANK_BY, required, skipped

from .cgroups import Group
from .evaluate import MethodError, check_outputs, default_seeds, score
from .methods import NAME, Submission, check_name, check_spec, submission
from .outputs import OutputError, max_run_bytes, read_embeddings, read_run
from .public import make_public, write_public
from .runner import UNCONFINED
from .sandbox import Limits, describe

RESULT_VERSION = 3  # v2: the scoring side's kind, the code's record, confinement; v3: property protocols
# (v3 results may also say what held of the sandbox: its engine and limits; older ones do not; and
# the metrics the zoo requires and the protocols it skips: older ones are of zoos that skip none)
ALL_REQUIRED = required(2)  # what a result that does not say so must hold
BOARDS = {"relations": "Task relations", "properties": "Properties, predicted from the representation"}
KINDS = {"weights": "Weights only", "functional": "Functional: the methods run the models on probe inputs"}


def file_sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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
        (work / "submitted_method.py").chmod(0o644)  # root runs the method as a uid of its own
        return (
            f"submitted_method.py:{name}",
            [],
            {"file": Path(target).name, "sha256": hashlib.sha256(data).hexdigest()},
        )
    top = _top_location(target)
    source = _module_file(target, top) if top else None
    return (
        spec,
        [str(top)] if top else [],
        {"module": target, "version": _module_version(target), "sha256": file_sha256(source) if source else None},
    )


class _Tail:
    """The last bytes of a child's stream, read as they come, so a flood cannot fill memory."""

    def __init__(self, stream, keep: int = 1 << 16):
        self.data, self._keep = b"", keep
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for chunk in iter(lambda: stream.read(1 << 16), b""):
            self.data = (self.data + chunk)[-self._keep :]

    def text(self) -> str:
        self._thread.join(5)
        return self.data.decode(errors="replace")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process; the start time tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _process_tree(pid: int) -> dict[int, int]:
    """{pid: start time} of ``pid`` and every process below it (orphans of a PID namespace stay
    below its pid 1)."""
    children: dict[int, list[int]] = {}
    started = {}
    for d in os.listdir("/proc"):
        st = _stat(int(d)) if d.isdigit() else None
        if st is not None:
            children.setdefault(st[0], []).append(int(d))
            started[int(d)] = st[1]
    tree, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in started:
            tree[p] = started[p]
        todo += children.get(p, [])
    return tree


def _resident(pids) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Watch:
    """Kills the method when its processes together passed their memory limit, or it runs past its
    time; remembers which processes it saw, to wait for them to end.

    With a memory cgroup, the kernel's OOM kills in it tell; the sum of resident memory, the
    fallback, counts a page shared by forked processes once in each and misses memory no process
    maps."""

    def __init__(self, proc: subprocess.Popen, memory: int, timeout: float, group: Group, period: float = 0.1):
        self.proc, self.memory, self.timeout, self.group, self.period = proc, memory, timeout, group, period
        self.reason: str | None = None
        self.seen: dict[int, int] = {}  # pid: start time
        self.peak = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.proc.poll() is None:
            tree = _process_tree(self.proc.pid)
            self.seen.update(tree)
            if "memory" in self.group.dirs:
                over = self.group.oom_kills() > 0
            else:
                used = _resident(tree)
                self.peak = max(self.peak, used)
                over = used > self.memory
            if over:
                self.kill("memory")
            elif time.monotonic() > deadline:
                self.kill("time")
            time.sleep(self.period)
        if self.group.oom_kills():  # the kernel's kill may have ended the run between two polls
            self.reason = self.reason or "memory"

    def _alive(self) -> list[int]:
        return [p for p, t in self.seen.items() if (_stat(p) or (0, None))[1] == t]

    def kill(self, reason: str) -> None:
        self.reason = self.reason or reason
        if self.proc.poll() is None:  # the outer runner first: its sandbox's pid 1 dies with it, and
            self.proc.kill()  # with pid 1 every process of the namespace
        self.group.kill()
        for p in self._alive():  # an unconfined run's leftovers
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait_gone(self, limit: float = 10) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end and self._alive():
            time.sleep(0.05)


def _failure(watch: _Watch, returncode: int, lines: list[str], limits: Limits, timeout: float) -> str:
    """Why a run failed, in one line: the scorer's own knowledge first, then the child's last line."""
    if watch.reason == "time":
        return f"method ran past its time limit of {timeout:g} s; pass --timeout to allow more"
    if watch.reason == "memory":
        return f"method failed: it passed {describe('memory', limits.memory)} (all its processes together)"
    if returncode in (128 + signal.SIGXCPU, -signal.SIGXCPU, 128 + signal.SIGKILL, -signal.SIGKILL):
        return f"method failed: it passed {describe('cpu', limits.cpu)} (per process)"
    why = (lines or [f"exit code {returncode}"])[-1]
    return f"method failed: {_printable(why)}"


def run_isolated(
    sub: Submission,
    seeds: list[int],
    public: dict,
    timeout: float,
    sandbox: str = "auto",
    data_root=None,
    limits: Limits = Limits(),
) -> tuple[list[dict], dict, dict | None]:
    """Run ``sub`` in child processes on the public file for ``seeds``: (its outputs per seed, the
    record of its code, what held of the sandbox, None if it ran unconfined).

    Each seed runs in a child of its own, so no seed's run can pass its work to another's (the time
    limit is for all of them together). A child works in a fresh directory holding only the public
    file (and a copy of the method's file), with a scrubbed environment; confined
    (``metrics.sandbox``) it can read nothing else but code, and no dataset: not the data directory
    (``data_root``, else $MODELSET_DATA), nor any the sandbox knows. Its only outputs are one
    inherited file, read by header (``metrics.outputs``).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ModelsetError(f"--timeout must be > 0 seconds, got {timeout!r}")
    base = Path(tempfile.mkdtemp(prefix="modelset-submission-"))
    work = base / "work"  # shown read-only to every seed's child, staged once
    work.mkdir()
    try:
        write_public(work / "public.h5", public)
        (work / "public.h5").chmod(0o644)
        spec, readable, code = stage_code(sub.spec, work)
        deadline = time.monotonic() + timeout
        outputs, helds, warned = [], [], False
        for seed in seeds:
            out, held, warning = _run_seed(
                spec,
                seed,
                public,
                base / f"seed-{seed}",
                work,
                readable,
                (deadline, timeout),
                sandbox,
                data_root,
                limits,
            )
            if warning and not warned:  # the runner's, printed before the method's code loads
                print(f"modelset: {_printable(warning)}", file=sys.stderr)
                warned = True
            outputs.append(out)
            helds.append(held)
        return outputs, code, None if None in helds else helds[0]  # confined only if every seed was
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_seed(
    spec: str,
    seed: int,
    public: dict,
    run: Path,
    work: Path,
    readable: list[str],
    time_limit: tuple[float, float],
    sandbox: str,
    data_root,
    limits: Limits,
) -> tuple[dict, dict | None, str | None]:
    """One seed's child: (its outputs, what held of the sandbox, the runner's unconfined warning)."""
    deadline, timeout = time_limit
    if time.monotonic() >= deadline:
        raise MethodError(f"method ran past its time limit of {timeout:g} s; pass --timeout to allow more")
    root = run / "root"  # the mount point of the sandbox's own /
    root.mkdir(parents=True)
    status_r, status_w = os.pipe()
    out_fd = os.open(run / "outputs.npz", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fds = {status_r, status_w, out_fd}  # still open here: closed once, never a number reused since
    group = Group.make(limits.memory, limits.processes)  # joined by the runner before it forks
    try:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
        env.update(
            HOME=str(work),
            TMPDIR=str(work),
            MPLCONFIGDIR=str(work),
            PYTHONDONTWRITEBYTECODE="1",
            OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
        )
        cfg = {
            "spec": spec,
            "seeds": [seed],
            "sandbox": sandbox,
            "root": str(root),
            "readable": readable,
            "hidden": [d for d in (data_root or os.environ.get(DATA_ENV),) if d],
            "limits": limits.record(),
            "binds": {f.name: str(f) for f in work.iterdir()},
            "status": status_w,
            "outputs": out_fd,
            "cgroups": sorted({d for d, _ in group.dirs.values()}),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "metrics.runner", json.dumps(cfg)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(status_w, out_fd),
            start_new_session=True,
        )
        for fd in (status_w, out_fd):
            os.close(fd)
            fds.discard(fd)
        tail = _Tail(proc.stderr)
        watch = _Watch(proc, limits.memory, deadline - time.monotonic(), group)
        watch.run()
        watch.kill("ended")  # whatever it left behind, had the sandbox not held
        watch.wait_gone()
        fds.discard(status_r)
        with os.fdopen(status_r, "r") as fh:
            status = fh.read()
        lines = [ln for ln in tail.text().strip().splitlines() if ln.strip()]
        unconfined = [ln for ln in lines if ln.startswith(UNCONFINED)]
        if watch.reason != "ended" or proc.returncode != 0:
            raise MethodError(
                _failure(watch, proc.returncode, [ln for ln in lines if ln not in unconfined], limits, timeout)
            )
        held = json.loads(status.splitlines()[0]) if status.strip() else None
        if held is not None:
            held["held_by"] = group.record()
        try:
            (outputs,) = read_run(run / "outputs.npz", public, [seed], max_run_bytes(public, [seed]))
        except OutputError as e:
            raise MethodError(f"method outputs rejected: {_printable(str(e), 200)}") from None
        return outputs, held, unconfined[0] if held is None and unconfined else None
    finally:
        group.remove()
        for fd in fds:
            os.close(fd)


def check_seeds(seeds: list[int]) -> list[int]:
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ModelsetError(f"--seeds {','.join(map(str, seeds))!r}: give distinct non-negative integers, e.g. 0,1,2")
    return list(seeds)


def _read_embeddings(path: Path, public: dict) -> dict:
    try:
        return read_embeddings(path, public)
    except OutputError as e:
        raise ModelsetError(f"--embeddings {str(path)!r}: {e}") from None


def _embeddings_submission(embeddings: str, name, seeds, functional: bool, learned: bool) -> Submission:
    path = Path(embeddings)
    if not path.is_file():
        raise ModelsetError(f"--embeddings {embeddings!r} not found")
    if seeds is not None or learned:
        raise ModelsetError("--seeds and --learned go with --method; embeddings computed elsewhere are one result")
    return Submission(f"embeddings:{path.name}", check_name(name if name is not None else path.stem), False, functional)


def _result(
    ms,
    archive,
    sub: Submission,
    seeds,
    code: dict,
    held: dict | None,
    scores: list[dict],
    runtime: float,
    now: datetime,
) -> dict:
    import modelset

    return {
        "result_version": RESULT_VERSION,
        "method": sub.name,
        "spec": sub.spec,
        "kind": sub.kind,
        "learned": sub.learned,
        "seeds": seeds,
        "code": code,
        "confined": held is not None,
        "sandbox": held,
        "required": required(len(ms.tasks)),
        "skipped": skipped(len(ms.tasks)),
        "scores": {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
            for k in scores[0]
            for v in [[s[k] for s in scores]]
        },
        "archive": Path(archive).name,
        "archive_sha256": file_sha256(archive),
        "preset": ms.attrs["name"],
        "plan_hash": ms.attrs["plan_hash"],
        "versions": {"modelset": modelset.__version__, "python": platform.python_version(), "numpy": np.__version__},
        "time": now.isoformat(timespec="microseconds"),
        "runtime_s": round(runtime, 2),
    }


def submit(
    archive,
    method: str | None = None,
    embeddings: str | None = None,
    name: str | None = None,
    seeds: list[int] | None = None,
    functional: bool = False,
    learned: bool = False,
    timeout: float = 900,
    results_dir=None,
    sandbox: str = "auto",
    data_root=None,
    limits: Limits = Limits(),
) -> dict:
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
            per_seed, code, held = run_isolated(sub, seeds, public, timeout, sandbox, data_root, limits)
        else:
            path = Path(embeddings)
            per_seed, code, held = (
                [_read_embeddings(path, public)],
                {"file": path.name, "sha256": file_sha256(path)},
                None,
            )
        scores = [score(o, public, key, ms) for o in per_seed]
        now = datetime.now(UTC)
        result = _result(ms, archive, sub, seeds, code, held, scores, time.time() - t0, now)
    # sub.name matches methods.NAME (no separator, no leading dot): the file stays in results_dir
    write_text(results_dir / f"{sub.name}--{now.strftime('%Y%m%dT%H%M%S%fZ')}.json", json.dumps(result, indent=1))
    render(results_dir)
    return result


def plot(
    archive,
    method: str,
    out,
    functional: bool = False,
    timeout: float = 900,
    sandbox: str = "auto",
    data_root=None,
    limits: Limits = Limits(),
) -> None:
    """A PNG of a method on the retrieval test models (unseen tasks), run as a submission is: in the
    sandboxed child, on the public file, seed 0."""
    import modelset

    from .plots import plot_method

    sub = submission(method, functional=functional)
    with modelset.load(archive) as ms:
        public, key = make_public(ms, public_rng(ms), sub.functional, data_root, splits=("retrieval",))
        per_seed, _, _ = run_isolated(sub, [0], public, timeout, sandbox, data_root, limits)
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
        need = r.get("required", ALL_REQUIRED)  # the zoo's required metrics, as the scorer wrote them
        return bool(
            r["result_version"] == RESULT_VERSION
            and isinstance(r["method"], str)
            and NAME.fullmatch(r["method"])
            and r["kind"] in KINDS
            and isinstance(r["seeds"], list)
            and n > 0
            and all(type(s) is int for s in r["seeds"])
            and isinstance(r["code"], dict)
            and isinstance(r["confined"], bool)
            and isinstance(r["scores"], dict)
            and isinstance(need, list)
            and bool(need)
            and set(need) <= set(ALL_REQUIRED)
            and all(k in r["scores"] for k in need)
            and isinstance(r.get("skipped", {}), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in r.get("skipped", {}).items())
            and all(
                _number(v["mean"])
                and _number(v["std"])
                and isinstance(v["values"], list)
                and len(v["values"]) == n
                and all(map(_number, v["values"]))
                for v in r["scores"].values()
            )
        )
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
    return {
        "kind": r["kind"],
        "method": r["method"],
        "seeds": len(r["seeds"]),
        "confined": r["confined"],
        "time": r["time"],
        "result": f.name,
        "code_sha256": r["code"].get("sha256"),
        "skipped": json.dumps(r.get("skipped", {}), sort_keys=True),  # {protocol: why}
        **{k: sc[k]["mean"] for k in HEADLINE if k in sc},
        **{f"{k} std": sc[k]["std"] for k in HEADLINE if k in sc},
    }


def _table(part: pd.DataFrame, board: str) -> list[str]:
    shown = [
        k
        for k in HEADLINE
        if PROTOCOLS[k.partition(".")[0]].board == board and k in part.columns and part[k].notna().any()
    ]
    lines = ["| rank | method | seeds | " + " | ".join(shown) + " |", "|---" * (3 + len(shown)) + "|"]
    for r in part.to_dict("records"):
        cells = [f"{r[k]:.3f} ± {r[k + ' std']:.3f}" if r["seeds"] > 1 else f"{r[k]:.3f}" for k in shown]
        method = r["method"] + ("" if r["confined"] else " (unconfined)")  # the sandbox's promises do not hold
        lines.append(f"| {r['rank']} | {method} | {r['seeds']} | " + " | ".join(cells) + " |")
    return lines


def _skipped(part: pd.DataFrame, board: str) -> str | None:
    """Why a board's table is empty: every protocol on it skipped by the zoo, as its results say."""
    on_board = [p for p in PROTOCOLS.values() if p.board == board and p.required]
    reasons = {k: v for text in part["skipped"] for k, v in json.loads(text).items()}
    if not on_board or any(p.name not in reasons for p in on_board):
        return None
    return f"Skipped ({', '.join(p.name for p in on_board)}): {reasons[on_board[0].name]}."


def render(results_dir) -> pd.DataFrame:
    """leaderboard.csv and leaderboard.md from every result file (the newest per method and kind),
    each kind ranked apart by the protocols' ranking metric (``RANK_BY``: retrieval mAP; accuracy's
    Kendall tau on a zoo of one task), its
    task-relation and property scores in two tables, or why the zoo skips one. Files that are not
    results (of this version, or of the zoo the others are) are named in one warning."""
    results_dir = Path(results_dir)
    loaded, ignored = [], []
    for f in sorted(results_dir.glob("*.json")):
        r = _load_result(f)
        if r is None:
            ignored.append(_printable(f.name, 80))
        else:
            loaded.append((f, r))
    # One board, one zoo: a result requiring fewer metrics than the others is not of this zoo.
    most = max((len(r.get("required", ALL_REQUIRED)) for _, r in loaded), default=0)
    ignored += [_printable(f.name, 80) for f, r in loaded if len(r.get("required", ALL_REQUIRED)) < most]
    rows = [_board_row(f, r) for f, r in loaded if len(r.get("required", ALL_REQUIRED)) == most]
    if ignored:
        print(
            f"modelset: warning: {len(ignored)} file(s) in {results_dir} are not results (result format "
            f"v{RESULT_VERSION}), not shown: {', '.join(ignored)}",
            file=sys.stderr,
        )
    board = pd.DataFrame(columns=["kind", "rank", "method", "seeds", *ALL_REQUIRED])
    if rows:
        board = pd.DataFrame(rows).sort_values("time").groupby(["kind", "method"]).tail(1)
        board["kind"] = pd.Categorical(board["kind"], list(KINDS))
        # The first ranking metric every result holds (a zoo of one task has no retrieval).
        by = next((k for k in RANK_BY if k in board and board[k].notna().all()), RANK_BY[-1])
        board = board.sort_values(["kind", by], ascending=[True, False]).reset_index(drop=True)
        board.insert(
            1,
            "rank",
            board.groupby("kind", observed=True)[by].rank(ascending=False, method="min").astype(int),
        )
    write_text(results_dir / "leaderboard.csv", board.to_csv(index=False))
    lines = []
    for kind, title in KINDS.items():
        part = board[board["kind"] == kind]
        if len(part):
            lines += [f"## {title}", ""]
            for board_name, board_title in BOARDS.items():
                why = _skipped(part, board_name)
                lines += [f"### {board_title}", "", *([why] if why else _table(part, board_name)), ""]
    write_text(results_dir / "leaderboard.md", "\n".join(lines) if lines else "No results yet.\n")
    return board
