import numpy as np
import pytest

from keras_pretrain.data.splits import few_label_split, split_labelled
from keras_pretrain.evaluation import EvaluationConfig

NAMES = ["cat", "dog", "owl"]


def test_few_label_split_is_disjoint_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], 30)
    train, val = few_label_split(labels, 5, 10, seed=0)
    assert np.bincount(labels[train]).tolist() == [5] * 3 and np.bincount(labels[val]).tolist() == [10] * 3
    assert not set(train) & set(val)
    assert np.array_equal(train, few_label_split(labels, 5, 10, seed=0)[0])
    assert not np.array_equal(train, few_label_split(labels, 5, 10, seed=1)[0])


def test_carved_test_split_is_stratified_fixed_and_held_out():
    labels = np.repeat([0, 1, 2], [50, 40, 30])
    config = EvaluationConfig(labels_per_class=4, val_per_class=5, test_fraction=0.2)
    first = split_labelled(labels, NAMES, config, seed=0)
    assert first.test_carved
    assert np.bincount(labels[first.test]).tolist() == [10, 8, 6]  # 20% of each class
    assert np.bincount(labels[first.val]).tolist() == [5] * 3 and np.bincount(labels[first.train]).tolist() == [4] * 3
    assert np.array_equal(first.held_out, np.union1d(first.val, first.test))
    assert not set(first.train) & set(first.held_out) and not set(first.val) & set(first.test)
    other_seed = split_labelled(labels, NAMES, config, seed=1)
    assert np.array_equal(first.test, other_seed.test) and np.array_equal(first.val, other_seed.val)
    assert not np.array_equal(first.train, other_seed.train)  # only the label draw moves with the seed
    capped = split_labelled(labels, NAMES, EvaluationConfig(labels_per_class=4, val_per_class=5, max_test_per_class=7), 0)
    assert np.bincount(labels[capped.test]).tolist() == [7, 7, 6]
    fixed = split_labelled(labels, NAMES, EvaluationConfig(labels_per_class=4, val_per_class=5, test_per_class=3), 0)
    assert np.bincount(labels[fixed.test]).tolist() == [3] * 3


def test_a_separate_test_set_is_kept_whole_or_cut_to_max_test():
    labels = np.repeat([0, 1, 2], 20)
    config = EvaluationConfig(labels_per_class=2, val_per_class=3)
    indices = split_labelled(labels, NAMES, config, seed=0, test_labels=np.zeros(50, int))
    assert not indices.test_carved and len(indices.held_out) == 0 and np.array_equal(indices.test, np.arange(50))
    cut = split_labelled(labels, NAMES, EvaluationConfig(labels_per_class=2, val_per_class=3, max_test=10), 0,
                         test_labels=np.zeros(50, int))
    assert np.array_equal(cut.test, np.arange(10))


def test_one_class_and_small_classes_are_clear_errors():
    with pytest.raises(ValueError, match="needs at least two classes; the labelled data has only class 'cat'"):
        split_labelled(np.zeros(30, int), NAMES, EvaluationConfig(), seed=0)
    labels = np.repeat([0, 1], [40, 12])
    with pytest.raises(ValueError, match=r"Class 'dog' has 12 labelled examples, fewer than the 10 training labels, "
                                         r"2 validation and held-out test examples asked for: lower --labels-per-class "
                                         r"\(at most 8 here\)"):
        split_labelled(labels, NAMES, EvaluationConfig(labels_per_class=10, val_per_class=2, test_per_class=2), seed=0)
