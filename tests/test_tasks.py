import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits

from modelset.datasets import load_dataset
from modelset.errors import ModelsetError
from modelset.tasks import TRANSFORMS, balanced_subsets, make_tasks, relation_matrix, task_arrays


def test_embedded_digits_is_sklearns_digits():
    ds, ref = load_dataset("digits"), load_digits()
    assert ds.images.shape == (1797, 1, 8, 8)
    raw = ref.images[:, None][~ds.test]
    np.testing.assert_allclose(ds.images, (ref.images[:, None] - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
    assert abs(ds.images[~ds.test].mean()) < 1e-5 and abs(ds.images[~ds.test].std() - 1) < 1e-5
    np.testing.assert_array_equal(ds.labels, ref.target)


def test_split_is_fixed_and_stratified():
    ds = load_dataset("digits")
    assert ds.test.sum() == 450  # 25 %
    per_class = np.bincount(ds.labels[ds.test], minlength=10) / np.bincount(ds.labels, minlength=10)
    assert np.all(np.abs(per_class - 0.25) < 0.01)


def test_balanced_subsets_use_every_digit_equally_and_deterministically():
    chosen = balanced_subsets(10, 3, 50, seed=0)
    assert len(set(chosen)) == 50 and all(len(c) == 3 for c in chosen)
    assert np.bincount(np.ravel(chosen), minlength=10).tolist() == [15] * 10
    assert balanced_subsets(10, 3, 50, seed=0) == chosen
    assert balanced_subsets(10, 3, 50, seed=1) != chosen


def test_impossible_task_count_is_a_clear_error():
    with pytest.raises(ModelsetError, match="tasks.count=121 is impossible"):
        balanced_subsets(10, 3, 121, seed=0)


def test_relations_are_jaccard_levels():
    ds = load_dataset("digits")
    tasks = make_tasks({"classes_per_task": 3, "count": 50, "classes": [], "transform": "none"}, ds, seed=0)
    r = relation_matrix(tasks)
    assert r.shape == (50, 50)
    np.testing.assert_array_equal(np.diag(r), 1)
    np.testing.assert_array_equal(r, r.T)
    np.testing.assert_allclose(np.unique(r), [0.0, 0.2, 0.5, 1.0])  # all four levels occur
    a, b = tasks[0].classes, tasks[1].classes
    assert r[0, 1] == pytest.approx(len(set(a) & set(b)) / len(set(a) | set(b)))


def test_task_labels_are_ordered_by_digit():
    ds = load_dataset("digits")
    x, y = task_arrays(ds, (7, 2, 5), "none", "train")
    base = ds.labels[np.isin(ds.labels, [2, 5, 7]) & ~ds.test]
    np.testing.assert_array_equal(np.array([2, 5, 7])[y], base)
    assert x.shape == (len(y), 1, 8, 8) and x.dtype == np.float32


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transforms_keep_shape_and_change_pixels(name):
    ds = load_dataset("digits")
    x0, _ = task_arrays(ds, (0, 1), "none", "test")
    x, _ = task_arrays(ds, (0, 1), name, "test")
    assert x.shape == x0.shape
    assert np.array_equal(x, x0) == (name == "none")


def test_explicit_class_lists_are_validated():
    ds = load_dataset("digits")
    spec = {"classes_per_task": 3, "count": 1, "transform": "none"}
    with pytest.raises(ModelsetError, match="class 12 is not in dataset 'digits'"):
        make_tasks({**spec, "classes": [[0, 1, 12]]}, ds, 0)
    with pytest.raises(ModelsetError, match="listed twice"):
        make_tasks({**spec, "classes": [[0, 1, 2], [2, 1, 0]]}, ds, 0)
    tasks = make_tasks({**spec, "classes": [list(c) for c in itertools.combinations(range(4), 2)]}, ds, 0)
    assert [t.name for t in tasks][:2] == ["0-1", "0-2"]
