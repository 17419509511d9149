"""Few-label splits drawn reproducibly from a labelled set."""

import dataclasses

import numpy as np


def few_label_split(labels, per_class, val_per_class=0, seed=0):
    """Indices of `per_class` training and `val_per_class` validation examples per class.

    The two sets are disjoint and drawn with a fixed seed, so every model in a
    comparison sees the same labels.

    Example:
    >>> train_idx, val_idx = few_label_split(labels, per_class=10, val_per_class=50, seed=0)
    """
    if per_class < 1:
        raise ValueError(f"labels per class must be at least 1; got {per_class}.")
    if val_per_class < 0:
        raise ValueError(f"validation examples per class must be >= 0; got {val_per_class}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class + val_per_class:
            raise ValueError(
                f"class {label} has {len(members)} examples; {per_class} for training and "
                f"{val_per_class} for validation were asked for."
            )
        chosen = rng.permutation(members)
        train.append(chosen[:per_class])
        val.append(chosen[per_class : per_class + val_per_class])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


@dataclasses.dataclass
class SplitIndices:
    """Indices into the labelled source (`train`, `val`, and `test` unless `test_source` is set).

    `held_out` are the labelled examples kept out of pre-training (the carved
    validation and test splits; empty when a separate test set is given).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    held_out: np.ndarray
    test_carved: bool


def split_labelled(labels, class_names, config, seed, test_labels=None):
    """Draw the few-label splits for an `EvaluationConfig`; clear errors when a class is too small.

    With `test_labels` (a separate test set), training and validation labels
    are drawn from the labelled set with `seed`, and the test set is all of
    `test_labels` (up to `config.max_test`). Without it, validation and a
    stratified test split are held out first with `config.split_seed` (fixed,
    whatever the label draw's seed), then the training labels are drawn from
    the rest with `seed`.

    Example:
    >>> indices = split_labelled(source.labels(), source.class_names, EvaluationConfig(labels_per_class=5), seed=0)
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = f"only class {class_names[present[0]]!r}" if len(present) else "no labelled examples"
        raise ValueError(f"Few-label classification needs at least two classes; the labelled data has {only}: "
                         "add a folder (or label value) per class.")
    k, v = config.labels_per_class, config.val_per_class
    if test_labels is not None:
        test = np.arange(len(test_labels) if config.max_test is None else min(len(test_labels), config.max_test))
        _check_sizes(counts, class_names, k, v, 0, "")
        train, val = few_label_split(labels, k, v, seed=seed)
        return SplitIndices(train, val, test, np.array([], dtype=np.int64), test_carved=False)
    if config.test_per_class is not None:
        per_class_test = np.full(len(class_names), config.test_per_class)
    else:
        per_class_test = np.minimum(np.floor(config.test_fraction * counts).astype(int), config.max_test_per_class)
        per_class_test = np.maximum(per_class_test, 1)
    _check_sizes(counts, class_names, k, v, per_class_test, " and held-out test")
    # Two draws with the same fixed seed: the held-out examples, then validation and test among them.
    first = np.random.default_rng(config.split_seed)
    held_out = np.sort(np.concatenate([
        first.permutation(np.flatnonzero(labels == label))[: v + per_class_test[label]] for label in present
    ]))
    second = np.random.default_rng(config.split_seed)
    val, test = [], []
    for label in present:
        members = held_out[second.permutation(np.flatnonzero(labels[held_out] == label))]
        val.append(members[:v])
        test.append(members[v:])
    val, test = np.sort(np.concatenate(val)), np.sort(np.concatenate(test))
    pool = np.setdiff1d(np.arange(len(labels)), held_out)
    train = pool[few_label_split(labels[pool], k, seed=seed)[0]]
    return SplitIndices(train, val, test, held_out, test_carved=True)


def _check_sizes(counts, class_names, k, v, test, what):
    if k < 1:
        raise ValueError(f"labels per class must be at least 1; got {k}.")
    if v < 1:
        raise ValueError(f"validation examples per class must be at least 1; got {v}: choices are made on validation.")
    need = k + v + np.asarray(test)
    short = np.flatnonzero((counts > 0) & (counts < need))
    if len(short):
        c = short[0]
        room = counts[c] - v - (np.asarray(test)[c] if np.ndim(test) else test)
        raise ValueError(
            f"Class {class_names[c]!r} has {counts[c]} labelled examples, fewer than the {k} training labels, "
            f"{v} validation{what} examples asked for: lower --labels-per-class"
            + (f" (at most {room} here)" if room >= 1 else "")
            + " or evaluation.val_per_class (--set), or add examples."
        )
