"""Simple strong baselines that a pre-trained model has to beat."""

import numpy as np
from sklearn.linear_model import LogisticRegression


def logistic_regression(train, val, test, regularizations=(0.01, 0.1, 1.0, 10.0)):
    """Multinomial logistic regression on feature matrices, its `C` chosen on `val`.

    Each of `train`, `val`, `test` is `(features, labels)`; features are 2-D
    (flatten and scale images first). Returns `(test_accuracy, best_C)`.

    Example:
    >>> flat = lambda x: x.reshape(len(x), -1) / 255.0
    >>> accuracy, C = logistic_regression((flat(xt), yt), (flat(xv), yv), (flat(xs), ys))
    """
    best = None
    for C in regularizations:
        model = LogisticRegression(C=C, max_iter=2000).fit(*train)
        val_accuracy = model.score(*val)
        if best is None or val_accuracy > best[0]:
            best = (val_accuracy, C, model)
    _, C, model = best
    return float(model.score(*test)), C


def flatten_pixels(images):
    """uint8 images -> `(n, pixels)` floats in [0, 1], the raw-pixel baseline's features."""
    return np.asarray(images, dtype="float32").reshape(len(images), -1) / 255.0
