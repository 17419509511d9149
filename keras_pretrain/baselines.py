"""Simple strong baselines that a pre-trained model has to beat, and linear probes."""

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits


def fit_logistic_regression(train, val, regularizations=(0.01, 0.1, 1.0, 10.0)):
    """Multinomial logistic regression on feature matrices, its `C` chosen on `val`.

    `train` and `val` are `(features, labels)` with 2-D features. Returns
    `(model, C, val_accuracy)`; `model.coef_` and `model.intercept_` are the
    weights of a linear layer, so a probe can be copied into a Keras head.

    Example:
    >>> model, C, val_accuracy = fit_logistic_regression((flatten_pixels(xt), yt), (flatten_pixels(xv), yv))
    >>> test_accuracy = model.score(flatten_pixels(xs), ys)
    """
    return fit_logistic_regressions([(train, val)], regularizations)[0]


def fit_logistic_regressions(problems, regularizations=(0.01, 0.1, 1.0, 10.0)):
    """`fit_logistic_regression` on each `(train, val)` of `problems`, the fits spread over the CPU's cores.

    The same models as fitting one problem after another (each fit is
    deterministic), in the order of `problems`.

    Example:
    >>> draws = [((x[i], y[i]), (xv, yv)) for i in label_draws]
    >>> test_accuracies = [model.score(xs, ys) for model, _, _ in fit_logistic_regressions(draws)]
    """
    # Worker processes, not threads: the solver's Python loop holds the GIL (on the label curve's 60 fits, two
    # threads took 0.88x the time of one after another, two processes 0.55x).
    fitted = Parallel(n_jobs=-1)(delayed(_fit)(train, val, C) for train, val in problems for C in regularizations)
    per_problem = len(regularizations)
    # The first C of the best validation accuracy, as when fitting them in turn.
    return [max(fitted[i : i + per_problem], key=lambda result: result[2]) for i in range(0, len(fitted), per_problem)]


def _fit(train, val, C):
    # One BLAS thread: these products are too small to share, and OpenBLAS's threads made the fits ~10x slower here.
    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegression(C=C, max_iter=3000).fit(*train)
        return model, C, float(model.score(*val))


def fit_tfidf(texts):
    """A TF-IDF vectorizer of word unigrams and bigrams fitted on `texts`: the bag-of-words baseline's features.

    Fitting needs no labels, so it may use all the unlabeled text a
    pre-trained model sees, which makes the baseline stronger, not weaker.

    Example:
    >>> vectorizer = fit_tfidf(unlabeled_texts)
    >>> model, C, val_accuracy = fit_logistic_regression((vectorizer.transform(xt), yt), (vectorizer.transform(xv), yv))
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(texts)


def flatten_pixels(images):
    """uint8 images -> `(n, pixels)` floats in [0, 1], the raw-pixel baseline's features."""
    return np.asarray(images, dtype="float32").reshape(len(images), -1) / 255.0
