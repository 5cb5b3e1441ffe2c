"""The `modelset` command: build, presets, info, verify, leaderboard."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import ModelsetError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, as for every other bad input
        raise ModelsetError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="modelset", description="Build model zoos into HDF5 archives and inspect them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("build", help="train a preset's zoo into an archive (resumable)")
    b.add_argument("--preset", required=True, help="a built-in preset name or a TOML file")
    b.add_argument("--out", help="archive path (default: data/<preset name>.h5)")
    b.add_argument("--jobs", type=int, default=-1, help="worker processes (default -1: one per core)")
    b.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field, e.g. --set seeds=2 --set epochs=5 (repeatable)",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if the archive is up to date")
    b.add_argument("--keep-shards", action="store_true", help="keep the per-unit shard files after merging")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument(
        "--engine",
        choices=("batched", "reference"),
        help="training engine (default: the preset's, batched); same as --set engine=...",
    )
    b.add_argument("--device", default="cpu", help="torch device to train on: cpu (default) or cuda")
    where = b.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="train on a dask.distributed cluster, e.g. tcp://10.0.0.5:8786"
    )
    where.add_argument(
        "--cluster", choices=("local",), help="train on a dask LocalCluster of --jobs single-threaded worker processes"
    )
    b.add_argument(
        "--data-root",
        metavar="DIR",
        help="directory of the dataset files (MNIST, CIFAR, SVHN...; default: $MODELSET_DATA)",
    )
    b.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download missing dataset files into the data directory first",
    )

    sub.add_parser("presets", help="list the built-in presets")

    i = sub.add_parser("info", help="counts, accuracy distribution and sizes of an archive")
    i.add_argument("path")

    v = sub.add_parser("verify", help="re-check schema and every checksum; exit 1 on any problem")
    v.add_argument("path")

    ex = sub.add_parser("export", help="write an archive in another format (the Small CNN Zoo's)")
    ex.add_argument("path", help="the archive")
    ex.add_argument("--format", required=True, choices=("small-cnn-zoo",))
    ex.add_argument("out", help="a new directory: weights.npy, metrics.csv(.gz), layout.csv, <dataset>_split.csv")

    im = sub.add_parser("import", help="read a zoo of another format into an archive")
    im.add_argument("format", choices=("small-cnn-zoo",))
    im.add_argument("src", help="the zoo's directory (weights.npy, metrics.csv(.gz), layout.csv[, *_split.csv])")
    im.add_argument("--out", required=True, help="archive path to write")
    im.add_argument(
        "--data-root",
        metavar="DIR",
        help="directory of the dataset files, for a zoo modelset exported (default: $MODELSET_DATA)",
    )

    lb = sub.add_parser("leaderboard", help="score similarity methods on an archive's fixed splits")
    lsub = lb.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s = lsub.add_parser("submit", help="score a method in a separate process and record the result")
    s.add_argument("--archive", required=True)
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--method", help="built-in name, module:Class or path/to/file.py:Class")
    what.add_argument("--embeddings", help=".npz with one (n, d) array per protocol, rows in the public file's order")
    s.add_argument("--name", help="name on the leaderboard (default: the built-in's or the class's name in --method)")
    _kind_arguments(s)
    s.add_argument(
        "--learned",
        action="store_true",
        help="the method learns from the training tasks: scored over seeds 0-4 unless --seeds says "
        "otherwise (built-ins: known)",
    )
    s.add_argument("--seeds", help="comma-separated method seeds (default: 0-4 if learned, else 0)")
    _run_arguments(s)
    s.add_argument("--results", help="results directory (default data/leaderboard/<archive name>)")
    pub = lsub.add_parser("public", help="write the public file a method may see (for --embeddings)")
    pub.add_argument("--archive", required=True)
    pub.add_argument("--out", required=True)
    _kind_arguments(pub)
    r = lsub.add_parser("render", help="re-render leaderboard.csv/.md from the result files")
    r.add_argument("--results", required=True)
    lsub.add_parser("methods", help="list the built-in methods")
    pl = lsub.add_parser("plot", help="PNG: a method's similarity beside the relations, and a map by task")
    pl.add_argument("--archive", required=True)
    pl.add_argument("--method", required=True)
    pl.add_argument("--out", required=True)
    _kind_arguments(pl)
    _run_arguments(pl)
    return p


def _build(args) -> int:
    from builders.build import build

    from .preset import load_preset

    overrides = args.overrides + ([f"engine={args.engine}"] if args.engine else [])
    preset = load_preset(args.preset, overrides)
    out = args.out or os.path.join("data", f"{preset.name}.h5")
    report = build(
        preset,
        out,
        jobs=args.jobs,
        force=args.force,
        keep_shards=args.keep_shards,
        progress=not args.no_progress,
        device=args.device,
        scheduler=args.scheduler,
        cluster=args.cluster,
        data_root=args.data_root,
        download=args.download,
    )
    if report["status"] == "up to date":
        print(f"{out}: up to date ({report['models']} models); --force rebuilds it")
    else:
        print(
            f"{out}: {report['models']} models ({report['trained']} trained now), "
            f"{os.path.getsize(out) / 2**20:.1f} MiB"
        )
    return 0


def _presets(args) -> int:
    from .preset import list_presets

    for name, desc in list_presets().items():
        print(f"{name:24s} {desc}")
    return 0


def _info(args) -> int:
    from .archive import load

    with load(args.path) as ms:
        print(ms.summary())
    return 0


def _verify(args) -> int:
    from .verify import verify

    problems = verify(args.path)
    for p in problems:
        print(f"{args.path}: {p}")
    if problems:
        print(f"{args.path}: {len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{args.path}: OK (schema and all parameter checksums)")
    return 0


def _export(args) -> int:
    from .archive import load
    from .smallcnnzoo import export

    with load(args.path) as ms:
        r = export(ms, args.out)
    print(f"{args.out}: {r['models']} models, {r['rows']} rows ({', '.join(r['files'])})")
    return 0


def _import(args) -> int:
    from .smallcnnzoo import import_zoo

    r = import_zoo(args.src, args.out, data_root=args.data_root)
    skipped = "".join(f"; skipped {n} runs: {why}" for why, n in r["skipped"].items())
    kept = f"checkpoints at steps {', '.join(map(str, r['checkpoints']))}" if r["checkpoints"] else "final states only"
    print(f"{args.out}: {r['models']} models of {r['arch']}, {kept}{skipped}")
    print(
        f"{args.out}: "
        + (
            "ms.model(i) reproduces the stored accuracy"
            if r["reproduces"]
            else f"ms.model(i) cannot be checked against the stored accuracy here: {r['why_not']}"
        )
    )
    return 0


def _kind_arguments(p) -> None:
    p.add_argument(
        "--functional",
        action="store_true",
        help="the method runs the models: only then do its views hold the probe inputs (built-ins: known)",
    )
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="directory of the dataset files, for the probe inputs (default: $MODELSET_DATA)",
    )


def _size(text: str) -> int:
    """Bytes from '6G', '512M', '100k' or a plain number."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give bytes or e.g. 512M, 6G")
    return int(value)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _run_arguments(p) -> None:
    from metrics.sandbox import Limits

    d = Limits()
    p.add_argument("--timeout", type=float, default=900, help="seconds the method may run (default 900)")
    p.add_argument(
        "--sandbox",
        choices=("auto", "require", "off"),
        default="auto",
        help="confine the method to its work directory (default: when the OS allows)",
    )
    p.add_argument(
        "--memory",
        type=_size,
        default=d.memory,
        help=f"memory all the method's processes may hold together (default {d.memory >> 30}G)",
    )
    p.add_argument(
        "--disk",
        type=_size,
        default=d.disk,
        help=f"bytes the method may write into its work directory (default {d.disk >> 30}G)",
    )
    p.add_argument(
        "--processes",
        type=_count,
        default=d.processes,
        help=f"processes and threads the method may run at once (default {d.processes})",
    )
    p.add_argument(
        "--open-files",
        type=_count,
        default=d.files,
        help=f"files each of its processes may hold open (default {d.files})",
    )
    p.add_argument(
        "--cpu-time", type=_count, default=d.cpu, help=f"CPU seconds each of its processes may use (default {d.cpu})"
    )


def _limits(args):
    from metrics.sandbox import Limits

    return Limits(
        memory=args.memory, disk=args.disk, processes=args.processes, files=args.open_files, cpu=args.cpu_time
    )


def _leaderboard(args) -> int:
    from metrics import leaderboard as lb
    from metrics.methods import BUILTIN

    if args.action == "methods":
        for name, b in BUILTIN.items():
            print(
                f"{name:18s} {b.spec:36s} {'functional' if b.functional else 'weights':10s} "
                f"{'learned' if b.learned else ''}".rstrip()
            )
        return 0
    if args.action == "render":
        print(lb.render(args.results).to_string())
        return 0
    if args.action == "plot":
        lb.plot(
            args.archive,
            args.method,
            args.out,
            functional=args.functional,
            timeout=args.timeout,
            sandbox=args.sandbox,
            data_root=args.data_root,
            limits=_limits(args),
        )
        print(f"{args.out}: plot written")
    elif args.action == "public":
        from .archive import load

        with load(args.archive) as ms:
            lb.write_public_file(ms, args.out, functional=args.functional, data_root=args.data_root)
        print(f"{args.out}: public file written" + (" (with the probe inputs)" if args.functional else ""))
    else:
        try:
            seeds = [int(x) for x in args.seeds.split(",")] if args.seeds is not None else None
        except ValueError:
            raise ModelsetError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
        result = lb.submit(
            args.archive,
            method=args.method,
            embeddings=args.embeddings,
            name=args.name,
            seeds=seeds,
            functional=args.functional,
            learned=args.learned,
            timeout=args.timeout,
            results_dir=args.results,
            sandbox=args.sandbox,
            data_root=args.data_root,
            limits=_limits(args),
        )
        sc = result["scores"]
        print(
            f"{result['method']} ({result['kind']}): "
            + "  ".join(f"{k} {sc[k]['mean']:.3f}±{sc[k]['std']:.3f}" for k in lb.HEADLINE if k in sc)
        )
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = _parser().parse_args(argv)
        return {
            "build": _build,
            "presets": _presets,
            "info": _info,
            "verify": _verify,
            "leaderboard": _leaderboard,
            "export": _export,
            "import": _import,
        }[args.command](args)
    except ModelsetError as e:
        print(f"modelset: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modelset: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
