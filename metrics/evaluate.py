"""Running a method under the contract, checking what it returns, and scoring it with the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modelset.errors import ModelsetError
from modelset.protocols import PROTOCOLS, SPLITS, applicable, split_targets

from .methods import cosine_similarity
from .probes import embedding_probe, similarity_probe
from .protocols import EVALUATORS
from .views import ModelView, row_models


class MethodError(ModelsetError):
    """The submitted method failed or returned something unusable."""


def _represent(method, view) -> dict:
    if callable(getattr(method, "embed", None)):
        return {"embedding": np.asarray(method.embed(view))}
    return {"similarity": np.asarray(method.similarity(view))}


def run_method(cls, seed: int, public: dict) -> dict:
    """Outputs of one seed of a method on every split's public views (no labels of test rows).

    Per split, a fresh method fits on the training view, then represents the test rows (with the
    training rows first where the split's protocols compare the two). Where a protocol on the split
    uses the method's own classifier, and the method classifies, it scores the test rows over its
    training tasks (``predict_scores``); a method with ``predict_property`` predicts each public
    target of the split itself.
    """
    out = {}
    for name, (train, test) in public.items():
        split = SPLITS[name]
        method = cls(seed=seed)
        if callable(getattr(method, "fit", None)):
            method.fit(train)
        rep = _represent(method, ModelView.concat(train, test) if split.sees == "all" else test)
        if callable(getattr(method, "predict_scores", None)) and any(
            p.classifies for p in PROTOCOLS.values() if p.split is split
        ):
            rep["scores"] = np.asarray(method.predict_scores(test))
            rep["classes"] = np.asarray(method.classes_)
        if callable(getattr(method, "predict_property", None)):
            for target in train.targets or {}:
                values = method.predict_property(test, target)
                if values is not None:  # None: the method leaves this target to the fixed probe
                    rep[f"predict.{target}"] = np.asarray(values)
        out[name] = rep
    return out


def check_outputs(outputs: dict, public: dict) -> dict:
    """Validate a method's outputs; return {split: similarity over the rows it represented}.
    Raises MethodError."""
    sims = {}
    for name, (train, test) in public.items():
        rep = outputs.get(name)
        if rep is None:
            raise MethodError(f"no output for split {name!r}")
        n = len(train) + len(test) if SPLITS[name].sees == "all" else len(test)
        if "embedding" in rep:
            e = np.asarray(rep["embedding"])
            if e.ndim != 2 or e.shape[0] != n or e.shape[1] < 1:
                raise MethodError(f"{name}: embed() must return shape ({n}, d), got {e.shape}")
            _finite(name, "embed()", e)
            sims[name] = cosine_similarity(e)
        else:
            s = np.asarray(rep.get("similarity"))
            if s.shape != (n, n):
                raise MethodError(f"{name}: similarity() must return shape ({n}, {n}), got {s.shape}")
            _finite(name, "similarity()", s)
            sims[name] = s.astype(np.float64)
        if ("scores" in rep) != ("classes" in rep):  # outputs written by the method's own code
            raise MethodError(f"{name}: predict_scores() and classes_ go together; got only one")
        if "scores" in rep:
            sc, classes = np.asarray(rep["scores"]), np.asarray(rep["classes"])
            if sc.shape != (len(test), len(classes)):
                raise MethodError(
                    f"{name}: predict_scores() must return shape ({len(test)}, {len(classes)}), got {sc.shape}"
                )
            _finite(name, "predict_scores()", sc)
        for key in rep:
            if key.startswith("predict."):
                p = np.asarray(rep[key])
                if p.shape != (len(test),):
                    raise MethodError(
                        f"{name}: predict_property(view, {key[8:]!r}) must return shape ({len(test)},), got {p.shape}"
                    )
                _finite(name, "predict_property()", p)
    return sims


def _finite(protocol, what, a):
    if a.dtype.kind not in "fiu":
        raise MethodError(f"{protocol}: {what} returned non-numeric values ({a.dtype})")
    if not np.isfinite(a).all():
        raise MethodError(f"{protocol}: {what} returned NaN or infinite values")


@dataclass
class Case:
    """What one protocol's evaluator scores: a method's outputs on its split's public views, and the
    private truth of the test rows (``labels``: their tasks; ``truth``: their targets)."""

    outputs: dict  # the method's validated outputs on the split
    sim: np.ndarray  # similarity over the rows the method represented (training rows first if it saw them)
    train: ModelView  # the public training view (labels, targets)
    n_train: int  # training rows at the head of ``sim`` (0 if the method represented the test rows alone)
    test_ids: np.ndarray  # the private key: the test rows' ids in public order
    parts: dict  # the split's stored parts
    labels: np.ndarray  # the test rows' tasks
    relations: np.ndarray
    targets: tuple = ()  # the protocol's targets
    truth: dict = field(default_factory=dict)  # the test rows' values of every target

    def predict(self, target: str, kind: str) -> np.ndarray:
        """The method's own predictions of ``target`` for the test rows, else the fixed probe's."""
        own = self.outputs.get(f"predict.{target}")
        if own is not None:
            return np.asarray(own, np.float64) if kind == "regression" else np.asarray(own)
        train_y = self.train.targets[target]
        emb = self.outputs.get("embedding")
        if emb is not None:
            emb = np.asarray(emb, np.float64)
            return embedding_probe(emb[: self.n_train], train_y, emb[self.n_train :], kind)
        return similarity_probe(self.sim[self.n_train :, : self.n_train], train_y, kind)


def score(outputs: dict, public: dict, key: dict, ms, protocols=None) -> dict:
    """Every protocol's scores ({"<protocol>.<metric>": value}), computed with the private key (the
    test rows' ids per split, in public order), for ``protocols`` (default: all the archive supports
    on the public splits)."""
    sims = check_outputs(outputs, public)
    protocols = protocols if protocols is not None else applicable(ms, set(public))
    result = {}
    for p in protocols:
        train, _ = public[p.split.name]
        ids = key[p.split.name]
        targets = split_targets(ms, p.split, ids, [p])
        case = Case(
            outputs[p.split.name],
            sims[p.split.name],
            train,
            len(train) if p.split.sees == "all" else 0,
            ids,
            ms.split(p.split.name),
            ms.models.loc[row_models(ms, p.split.rows, ids), "task"].to_numpy(),
            ms.relations,
            tuple(targets),
            targets,
        )
        evaluator = EVALUATORS.lookup(p.evaluator)()
        result[p.name] = evaluator.eval(evaluator.inputs(case))
    return {f"{p}.{k}": v for p, scores_ in result.items() for k, v in scores_.items()}


def default_seeds(learned: bool) -> list[int]:
    """The one default: a learned method is scored over 5 of its own seeds, any other once."""
    return list(range(5)) if learned else [0]


def evaluate(
    ms, method: str, seeds=None, functional: bool = False, learned: bool = False, data_root=None, shuffle_seed: int = 0
) -> dict:
    """Score a method in-process on an opened archive: {"seeds", "scores": {metric: [per seed]}}.

    ``method`` and the flags are as for the leaderboard (``methods.submission``), which runs the
    same steps with the method in a sandboxed child.
    """
    from .methods import load_method, submission
    from .public import make_public

    sub = submission(method, functional=functional, learned=learned)
    cls = load_method(sub.spec)
    seeds = list(seeds) if seeds is not None else default_seeds(sub.learned)
    public, key = make_public(ms, np.random.default_rng(shuffle_seed), sub.functional, data_root)
    per_seed = [score(run_method(cls, s, public), public, key, ms) for s in seeds]
    return {"seeds": seeds, "scores": {k: [r[k] for r in per_seed] for k in per_seed[0]}}
