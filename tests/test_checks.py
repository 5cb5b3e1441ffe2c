"""modelset.check_method, the method author's check of the contract: every built-in passes it, and it
names, in one line each, what breaks the contract in methods broken on purpose."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import modelset
from metrics.baselines import RawCosine, WeightStats
from metrics.methods import BUILTIN, HIDDEN_UNITS, SimilarityMethod, load_method
from metrics.views import archive_view


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_passes_the_check(small_archive, name):
    cls = load_method(name)
    assert modelset.check_method(cls, small_archive, functional=BUILTIN[name].functional) == []
    method = cls(seed=3)
    assert clone(method).get_params() == method.get_params()


@pytest.mark.parametrize("name", ["weight-stats", "gram", "lps", "nfn"])
def test_a_method_used_before_fit_says_so_in_one_line(small_archive, name):
    with modelset.load(small_archive) as ms:
        view = archive_view(ms, range(4), with_labels=False)
    with pytest.raises(NotFittedError, match="not fitted yet") as e:
        load_method(name)(seed=0).embed(view)  # not standardised on the view itself
    assert "\n" not in str(e.value)


def test_hyper_parameters_are_constructor_arguments():
    lps = load_method("lps")(seed=1, rank=4)
    assert lps.get_params() == {
        "seed": 1,
        "rank": 4,
        "size": 4,
        "grams": "output",
        "epochs": 100,
        "lr": 1e-2,
        "weight_decay": 1e-2,
    }
    assert clone(lps.set_params(size=2)).size == 2
    assert load_method("learned-probes")().grams == "none"


# -- methods broken on purpose -------------------------------------------------------------------


class CountsEmbeds(WeightStats):
    """Counts its calls in its fitted state."""

    def fit(self, view):
        self.calls_ = 0
        return super().fit(view)

    def embed(self, view):
        out = super().embed(view)
        self.calls_ += 1
        return out


class Noisy(RawCosine):
    """Draws from the global random state, not from its seed."""

    def embed(self, view):
        return super().embed(view) + np.random.rand(len(view), 1)


class OneRowShort(RawCosine):
    def embed(self, view):
        return super().embed(view)[1:]


class ClaimsInvariance(RawCosine):
    """Raw weights change with filter order: the claim is false."""

    invariances = (HIDDEN_UNITS,)


class StandardisesOnTheView(WeightStats):
    """WeightStats as it was: used unfitted, it standardised on the view it was given."""

    def embed(self, view):
        from metrics.baselines import weight_statistics

        f = weight_statistics(view)
        return (f - getattr(self, "mean_", f.mean(0))) / getattr(self, "std_", f.std(0) + 1e-12)


class RenamesItsArgument(SimilarityMethod):
    def __init__(self, seed=0, scale=1.0):
        self.seed, self.factor = seed, scale

    def embed(self, view):
        return view.params * self.factor


class NotAnEstimator:
    def __init__(self, seed=0):
        self.seed = seed

    def embed(self, view):
        return view.params


@pytest.mark.parametrize(
    "cls, expected",
    [
        (CountsEmbeds, r"^embed\(view\) changed the fitted method: CountsEmbeds\.calls_ "),
        (Noisy, r"^embed\(view\) differs between two fits under seed 0 \(up to 0\.\d+\)"),
        (OneRowShort, r"^embed\(view\) of (\d+) models must return shape \(\1, d\), got \(\d+, \d+\)$"),
        (ClaimsInvariance, r"^claims invariance to hidden-unit order \('hidden_units'\), but embed\(view\) changes"),
        (StandardisesOnTheView, r"^embed\(view\) before fit returned a result, but fit sets \['mean_', 'std_'\]"),
        (RenamesItsArgument, r"^clone\(RenamesItsArgument\) fails: .*scale"),
        (NotAnEstimator, r"^NotAnEstimator has no get_params/set_params: inherit metrics\.methods\.SimilarityMethod"),
    ],
)
def test_the_check_names_what_a_broken_method_breaks_in_one_line(small_archive, cls, expected):
    problems = modelset.check_method(cls, small_archive)
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    assert __import__("re").search(expected, problems[0]), problems[0]


@pytest.mark.parametrize("name", ["lps-fixed", "lps", "first-order", "nfn", "statnn"])
def test_embed_and_predict_scores_compute_a_views_features_once(small_archive, name):
    from metrics.cache import _FEATURES

    with modelset.load(small_archive) as ms:
        train = archive_view(ms, ms.split("retrieval")["train"], with_labels=True)
        test = archive_view(ms, ms.split("retrieval")["query"], with_labels=False)
    method = load_method(name)(seed=0, epochs=2).fit(train)
    method.embed(test)
    computed = dict(_FEATURES[test])
    assert computed  # the view's features, kept while the view lives...
    method.predict_scores(test)
    assert _FEATURES[test].keys() == computed.keys()  # ...and read again, not recomputed
    assert all(_FEATURES[test][k] is v for k, v in computed.items())
