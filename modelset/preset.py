"""Presets: a TOML description of a zoo, validated, with ``--set key=value`` overrides.

A preset names a dataset, tasks, an architecture, seeds and a training recipe; [grid] sweeps
any [train] key over a list of values, and [sample] draws [train] keys at random per model
(``loguniform``, ``uniform`` or ``choice``; ``builders.plan`` draws them from the build seed).
``Preset.text`` is the resolved TOML stored in archives.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomli_w

from .archs import ACTIVATIONS, INITS, list_archs
from .augment import AUGMENTATIONS
from .datasets import list_datasets
from .errors import ModelsetError
from .families import FAMILIES

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ENGINES = ("batched", "reference")  # builders.batched / builders.train

# Every valid key with its type and a check; the defaults fill what a preset file omits.
DEFAULTS = {
    "name": "custom",
    "description": "",
    "dataset": "digits",
    "arch": "small_cnn",
    "family": "dense",
    "seed": 0,
    "seeds": 10,
    "unit_size": 10,
    "engine": "batched",
    # Epochs whose weights and metrics are kept besides the final ones (0: the initial weights).
    # Empty (the default) keeps none and leaves plans, hashes and archives as they were before.
    "checkpoints": [],
    "tasks": {
        "classes_per_task": 3,
        "count": 50,
        "classes": [],
        "transform": "none",
        "select": "balanced",
        "relation": "jaccard",
    },
    "train": {
        "epochs": 30,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 0.003,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "activation": "relu",
        "init": "default",
        # The defaults change nothing: no augmentation and a constant learning rate.
        "augment": "none",  # per-minibatch augmentation drawn from the data seed (modelset.augment)
        "lr_step_size": 0,  # step schedule: lr *= lr_gamma after every lr_step_size epochs (0: never)
        "lr_gamma": 0.1,
        # Options of the Small CNN Zoo's recipe (OPTIONAL_TRAIN): at these values they change nothing.
        "dropout": 0.0,  # after every conv layer's activation, in training only (SmallCNN architectures)
        "init_std": 0.0,  # the std of the normal, truncated_normal and uniform inits (which need it > 0)
        "train_fraction": 1.0,  # a fixed random subset of the task's training images, drawn per model
    },
    "grid": {},
    # [train] keys drawn at random per model: key = { loguniform = [lo, hi] } | { uniform = [lo, hi] }
    # | { choice = [values] }.
    "sample": {},
    # Per-family layer options, and [train] keys that override the recipe for that family only.
    "families": {name: dict(f.options) for name, f in FAMILIES.items()},
    "splits": {
        "task_id_train_fraction": 0.6,
        "retrieval_train_fraction": 0.6,
        "retrieval_query_fraction": 0.5,
        "epoch_max_rows": 1500,  # checkpoint rows per side of the epoch split (zoos with checkpoints)
    },
}


# [train] keys added after archives existed: a plan, a model table and a preset's stored text hold
# them only where the preset uses them (a value other than this, or a [grid] or [sample] key), so
# presets that do not keep their plan hashes and archives.
OPTIONAL_TRAIN = {"dropout": 0.0, "init_std": 0.0, "train_fraction": 1.0}
SAMPLERS = ("loguniform", "uniform", "choice")
# Sampled numbers are scored by the hparams protocol in this many bins of equal width (in log
# space for loguniform) between the distribution's bounds: ``Preset.sample_bins``.
SAMPLE_BINS = 4
_TABLES_OF_KEYS = ("grid", "sample")  # tables whose keys are [train] keys, not nested tables


def list_presets() -> dict[str, str]:
    """Built-in preset names with their one-line descriptions."""
    out = {}
    for f in sorted(resources.files("modelset.presets").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".toml"):
            out[f.name[:-5]] = tomllib.loads(f.read_text()).get("description", "")
    return out


@dataclass(frozen=True)
class Preset:
    data: dict

    def __getitem__(self, key):
        return self.data[key]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def text(self) -> str:
        # No checkpoints, no [sample] and no unused optional [train] key: the text (stored in
        # archives) is what it was before these keys existed.
        data = {k: v for k, v in self.data.items() if k not in ("checkpoints", "sample") or v}
        data["train"] = {k: v for k, v in data["train"].items() if k in self.recipe_keys}
        return tomli_w.dumps(data)

    @property
    def recipe_keys(self) -> tuple[str, ...]:
        """The [train] keys of every model's recipe: all but the optional ones the preset leaves unused."""
        d = self.data
        used = {*d["grid"], *d["sample"]}
        used |= {k for f in d["families"].values() if isinstance(f, dict) for k in f}
        return tuple(k for k, v in d["train"].items() if k not in OPTIONAL_TRAIN or v != OPTIONAL_TRAIN[k] or k in used)

    @property
    def sample_bins(self) -> dict[str, list[float]]:
        """{key: bin edges} of each sampled number (SAMPLE_BINS equal bins between its bounds)."""
        out = {}
        for key, dist in self.data["sample"].items():
            (kind, args), lo, hi = next(iter(dist.items())), None, None
            if kind == "loguniform":
                lo, hi = math.log(args[0]), math.log(args[1])
                out[key] = [math.exp(lo + (hi - lo) * i / SAMPLE_BINS) for i in range(SAMPLE_BINS + 1)]
            elif kind == "uniform":
                lo, hi = float(args[0]), float(args[1])
                out[key] = [lo + (hi - lo) * i / SAMPLE_BINS for i in range(SAMPLE_BINS + 1)]
        return out

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """The checkpoint epochs, sorted; empty for none."""
        return tuple(sorted(self.data["checkpoints"]))

    @property
    def seed_values(self) -> list[int]:
        s = self.data["seeds"]
        return list(range(s)) if isinstance(s, int) else list(s)


def load_preset(name_or_file: str, overrides: list[str] = ()) -> Preset:
    """A built-in preset by name, or a TOML file by path; then ``key=value`` overrides."""
    path = Path(name_or_file)
    if name_or_file.endswith(".toml") or path.exists():
        if not path.is_file():
            raise ModelsetError(
                f"preset file {name_or_file!r} not found; give a TOML file or one of: {', '.join(list_presets())}"
            )
        text, origin = path.read_text(), str(path)
    else:
        builtin = resources.files("modelset.presets").joinpath(f"{name_or_file}.toml")
        if not builtin.is_file():
            raise ModelsetError(
                f"unknown preset {name_or_file!r}; `modelset presets` lists them: {', '.join(list_presets())}"
            )
        text, origin = builtin.read_text(), name_or_file
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelsetError(f"preset {origin}: malformed TOML: {e}") from None
    data = _merge(copy.deepcopy(DEFAULTS), raw, origin)
    for item in overrides:
        _apply_override(data, item)
    _validate(data)
    return Preset(data)


def _merge(base: dict, raw: dict, origin: str, prefix="") -> dict:
    for key, value in raw.items():
        if key not in base:
            raise ModelsetError(
                f"preset {origin}: unknown key {prefix + key!r}; valid keys: {', '.join(_flat_keys(DEFAULTS))}"
            )
        if isinstance(base[key], dict) and key not in _TABLES_OF_KEYS:
            if not isinstance(value, dict):
                raise ModelsetError(f"preset {origin}: {prefix + key!r} must be a table")
            if prefix == "families.":  # over the family's defaults, key by key as --set does
                base[key].update(value)
            else:
                _merge(base[key], value, origin, prefix + key + ".")
        else:
            base[key] = value
    return base


def _flat_keys(d: dict, prefix="") -> list[str]:
    keys = []
    for k, v in d.items():
        if isinstance(v, dict) and k not in _TABLES_OF_KEYS and prefix != "families.":
            keys += _flat_keys(v, prefix + k + ".")
        else:
            keys.append(prefix + k)
    return keys


def _apply_override(data: dict, item: str) -> None:
    """``key=value`` with a TOML value; a key may drop its table when unambiguous (epochs)."""
    key, sep, value_text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ModelsetError(f"--set {item!r}: expected key=value, e.g. --set seeds=2")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()  # a bare word is a string: --set train.optimizer=sgd
    keys = _flat_keys(DEFAULTS)
    if key.startswith("grid."):
        if key[5:] not in [*DEFAULTS["train"], "family"]:
            raise ModelsetError(
                f"--set {key}: grid factors are [train] keys or family: {', '.join(DEFAULTS['train'])}"
                + (
                    "; checkpoints are one list for the whole zoo: --set checkpoints=[0,5]"
                    if key == "grid.checkpoints"
                    else ""
                )
            )
        data["grid"][key[5:]] = value
        return
    if key.startswith("sample."):  # checked with the rest of the preset
        data["sample"][key[7:]] = value
        return
    if key.startswith("families.") and key.count(".") == 2:
        _, fam, leaf = key.split(".")
        if fam not in FAMILIES:
            raise ModelsetError(f"--set {key}: unknown family {fam!r}; available: {', '.join(FAMILIES)}")
        data["families"][fam][leaf] = value
        return
    if key not in keys:
        matches = [k for k in keys if k.endswith("." + key)]
        if len(matches) != 1:
            raise ModelsetError(f"--set: unknown key {key!r}; valid keys: {', '.join(keys)}")
        key = matches[0]
    *tables, leaf = key.split(".")
    target = data
    for t in tables:
        target = target[t]
    target[leaf] = value


def _check(cond, msg):
    if not cond:
        raise ModelsetError(f"invalid preset: {msg}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Bounds far past any zoo's, so that a preset from elsewhere cannot make the planner or a trainer
# allocate without end (seeds = 10**12 is a list of 10**12 seeds; epochs a curve point per epoch).
MAX_EPOCHS = 10_000
MAX_BATCH = 1_000_000  # more than any dataset's training images
MAX_MODELS = 1_000_000
MAX_CLASSES_PER_TASK = 1_000

_TRAIN_CHECKS = {
    "epochs": (lambda v: _is_int(v) and 1 <= v <= MAX_EPOCHS, f"a whole number in 1..{MAX_EPOCHS}"),
    "batch_size": (lambda v: _is_int(v) and 1 <= v <= MAX_BATCH, f"a whole number in 1..{MAX_BATCH}"),
    "optimizer": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "momentum": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "activation": (lambda v: v in ACTIVATIONS, "one of " + ", ".join(ACTIVATIONS)),
    "init": (lambda v: v in INITS, "one of " + ", ".join(INITS)),
    "augment": (lambda v: v in AUGMENTATIONS, "one of " + ", ".join(AUGMENTATIONS)),
    "lr_step_size": (lambda v: _is_int(v) and v >= 0, "a whole number of epochs >= 0 (0: constant lr)"),
    "lr_gamma": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "init_std": (lambda v: _is_num(v) and v >= 0, "a number >= 0 (0: the init's own scale)"),
    "train_fraction": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
}
# Inits whose scale is train.init_std (modelset.archs.STD_INITS).
_STD_INITS = ("normal", "truncated_normal", "uniform")


def _check_sample(d: dict) -> None:
    """Each [sample] key: a [train] key outside [grid], one distribution whose every value is valid."""
    example = 'e.g. lr = { loguniform = [0.0005, 0.05] } or optimizer = { choice = ["sgd", "adam"] }'
    for key, dist in d["sample"].items():
        _check(key in _TRAIN_CHECKS, f"sample.{key}: sampled keys are [train] keys: {', '.join(_TRAIN_CHECKS)}")
        _check(key not in d["grid"], f"sample.{key}: {key} is also a [grid] factor; sweep it in one of the two")
        _check(
            isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in SAMPLERS,
            f"sample.{key} must be one distribution ({', '.join(SAMPLERS)}), {example}; got {dist!r}",
        )
        (kind, args), (ok, what) = next(iter(dist.items())), _TRAIN_CHECKS[key]
        if kind == "choice":
            _check(isinstance(args, list) and args, f"sample.{key}: choice needs a non-empty list of values, {example}")
            for v in args:
                _check(ok(v), f"sample.{key}: each choice must be {what}, got {v!r}")
            continue
        _check(
            isinstance(args, list) and len(args) == 2 and all(_is_num(v) for v in args) and args[0] < args[1],
            f"sample.{key}: {kind} needs [low, high] with low < high, {example}; got {args!r}",
        )
        _check(
            not _is_int(d["train"][key]),
            f"sample.{key}: {key} takes whole numbers; draw it with choice = [...], not {kind}",
        )
        _check(kind != "loguniform" or args[0] > 0, f"sample.{key}: loguniform needs low > 0, got {args!r}")
        for v in args:
            _check(ok(v), f"sample.{key}: {kind} bounds must be {what}, got {v!r}")


def _check_init_std(d: dict) -> None:
    """A std-scaled init has a std > 0 everywhere it can be drawn."""
    inits = {d["train"]["init"], *d["grid"].get("init", [])}
    if "init" in d["sample"] and "choice" in d["sample"]["init"]:
        inits |= set(d["sample"]["init"]["choice"])
    stds = d["grid"].get("init_std") or [d["train"]["init_std"]]  # what models can draw
    if "init_std" in d["sample"]:
        stds = list(next(iter(d["sample"]["init_std"].values())))
    needs = sorted(i for i in inits if i in _STD_INITS)
    _check(
        not needs or all(_is_num(s) and s > 0 for s in stds),
        f"train.init = {needs[0]!r} draws weights with std train.init_std, which must be > 0 (e.g. init_std = 0.05)"
        if needs
        else "",
    )


def _check_checkpoints(d: dict) -> None:
    """Distinct whole epochs within 0..epochs of every model (grid and family overrides included)."""
    c = d["checkpoints"]
    _check(
        isinstance(c, list) and all(_is_int(e) for e in c),
        f"checkpoints must be a list of whole epochs, e.g. [0, 1, 5, 10], got {c!r}",
    )
    _check(len(set(c)) == len(c), f"checkpoints must list each epoch once, got {c!r}")
    _check(all(e >= 0 for e in c), f"checkpoints must be epochs >= 0 (0: the initial weights), got {c!r}")
    if not c:
        return
    epochs = [
        d["train"]["epochs"],
        *d["grid"].get("epochs", []),
        *d["sample"].get("epochs", {}).get("choice", []),
        *(f["epochs"] for f in d["families"].values() if isinstance(f, dict) and "epochs" in f),
    ]
    fewest = min((e for e in epochs if _is_int(e)), default=None)
    _check(
        fewest is None or max(c) <= fewest,
        f"checkpoints: epoch {max(c)} is past the {fewest} epochs some models train; "
        f"keep checkpoints within 0..{fewest} or train longer",
    )


def _validate(d: dict) -> None:
    _check(isinstance(d["name"], str) and d["name"], "name must be a non-empty string")
    _check(
        d["dataset"] in list_datasets(), f"dataset {d['dataset']!r} is unknown; available: {', '.join(list_datasets())}"
    )
    _check(d["arch"] in list_archs(), f"arch {d['arch']!r} is unknown; available: {', '.join(list_archs())}")
    _check(d["family"] in FAMILIES, f"family {d['family']!r} is unknown; available: {', '.join(FAMILIES)}")
    _check(_is_int(d["seed"]) and d["seed"] >= 0, "seed must be a whole number >= 0")
    s = d["seeds"]
    _check(
        (_is_int(s) and s >= 1)
        or (isinstance(s, list) and s and all(_is_int(v) and v >= 0 for v in s) and len(set(s)) == len(s)),
        f"seeds must be a count >= 1 or a list of distinct seeds >= 0, got {s!r}",
    )
    _check(_is_int(s) and s <= MAX_MODELS or isinstance(s, list), f"seeds must be at most {MAX_MODELS}, got {s!r}")
    _check(_is_int(d["unit_size"]) and d["unit_size"] >= 1, "unit_size must be a whole number >= 1")
    _check(d["engine"] in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {d['engine']!r}")
    _check_checkpoints(d)
    t = d["tasks"]
    _check(
        _is_int(t["classes_per_task"]) and 2 <= t["classes_per_task"] <= MAX_CLASSES_PER_TASK,
        f"tasks.classes_per_task must be in 2..{MAX_CLASSES_PER_TASK}",
    )
    _check(_is_int(t["count"]) and t["count"] >= 1, "tasks.count must be a whole number >= 1")
    _check(
        isinstance(t["classes"], list)
        and all(isinstance(c, list) and all(_is_int(x) for x in c) for c in t["classes"]),
        "tasks.classes must be a list of class lists, e.g. [[0, 1, 2], [3, 4, 5]]",
    )
    if t["classes"]:
        _check(len({len(c) for c in t["classes"]}) == 1, "all tasks in tasks.classes need the same number of classes")
    from .tasks import RELATIONS, SELECTIONS, TRANSFORMS

    _check(t["transform"] in TRANSFORMS, f"tasks.transform must be one of {', '.join(TRANSFORMS)}")
    _check(t["select"] in SELECTIONS, f"tasks.select must be one of {', '.join(SELECTIONS)}, got {t['select']!r}")
    _check(t["relation"] in RELATIONS, f"tasks.relation must be one of {', '.join(RELATIONS)}, got {t['relation']!r}")
    for key, (ok, what) in _TRAIN_CHECKS.items():
        _check(ok(d["train"][key]), f"train.{key} must be {what}, got {d['train'][key]!r}")
    _check(isinstance(d["sample"], dict), "sample must be a table of [train] keys")
    _check_sample(d)
    _check_init_std(d)
    checks = {**_TRAIN_CHECKS, "family": (lambda v: v in FAMILIES, "one of " + ", ".join(FAMILIES))}
    for key, values in d["grid"].items():
        _check(
            key != "checkpoints",
            "grid.checkpoints: checkpoints are one list for the whole zoo, not a grid "
            "factor; set the top-level key, e.g. checkpoints = [0, 1, 5]",
        )
        _check(key in checks, f"grid.{key}: grid factors are [train] keys or family: {', '.join(checks)}")
        _check(isinstance(values, list) and values, f"grid.{key} must be a non-empty list")
        ok, what = checks[key]
        for v in values:
            _check(ok(v), f"grid.{key}: each value must be {what}, got {v!r}")
    n_models = (s if _is_int(s) else len(s)) * max(t["count"], len(t["classes"]))
    for values in d["grid"].values():
        n_models *= len(values)
    _check(
        n_models <= MAX_MODELS, f"the zoo would hold {n_models} models, more than {MAX_MODELS}; fewer seeds or tasks"
    )
    for fam, opts in d["families"].items():
        _check(fam in FAMILIES, f"families.{fam}: unknown family; available: {', '.join(FAMILIES)}")
        _check(isinstance(opts, dict), f"families.{fam} must be a table")
        for key, v in opts.items():  # [train] keys override the recipe for this family only
            if key in _TRAIN_CHECKS:
                ok, what = _TRAIN_CHECKS[key]
                _check(ok(v), f"families.{fam}.{key} must be {what}, got {v!r}")
        problem = FAMILIES[fam].check(opts, other_keys=tuple(_TRAIN_CHECKS))
        _check(problem is None, problem)
    for key, v in d["splits"].items():
        if key == "epoch_max_rows":
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                f"splits.{key} must be an integer >= 2, got {v!r}",
            )
        else:
            _check(_is_num(v) and 0 < v < 1, f"splits.{key} must be a fraction in (0, 1), got {v!r}")
