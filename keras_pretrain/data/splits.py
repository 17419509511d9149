"""Few-label splits drawn reproducibly from a labelled set."""

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
