import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from keras_pretrain import baselines
from keras_pretrain.baselines import fit_logistic_regression, fit_logistic_regressions


def separable(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return rng.normal(size=(n, 20)) + 3 * np.eye(3, 20)[labels], labels


def test_the_regularization_is_the_one_best_on_validation():
    train, val = separable(30, 0), separable(60, 1)
    model, C, val_accuracy = fit_logistic_regression(train, val, [0.001, 1.0])
    scores = {c: LogisticRegression(C=c, max_iter=3000).fit(*train).score(*val) for c in (0.001, 1.0)}
    assert C == max(scores, key=scores.get) and val_accuracy == max(scores.values()) and model.C == C


def test_fits_use_one_blas_thread(monkeypatch):
    # OpenBLAS's thread pool on these small products made the label curve's fits about 10x slower.
    threads = []
    fit = LogisticRegression.fit

    def recording_fit(self, *args, **kwargs):
        threads.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(baselines.LogisticRegression, "fit", recording_fit)
    with joblib.parallel_config(backend="sequential"):  # in this process, where the patch is: the workers run the same
        fit_logistic_regression(separable(30, 0), separable(30, 1), [0.1, 1.0])
    assert threads and set(threads) == {1}


def test_many_problems_fitted_side_by_side_give_what_fitting_each_in_turn_gives():
    problems = [(separable(30, seed), separable(60, seed + 10)) for seed in range(3)]
    results = fit_logistic_regressions(problems, [0.001, 0.1, 10.0])
    assert len(results) == 3
    for (train, val), (model, C, val_accuracy) in zip(problems, results):
        expected = fit_logistic_regression(train, val, [0.001, 0.1, 10.0])
        alone = LogisticRegression(C=C, max_iter=3000).fit(*train)
        assert C == expected[1] and val_accuracy == expected[2] == alone.score(*val)
        np.testing.assert_array_equal(model.coef_, alone.coef_)
