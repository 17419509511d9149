import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from keras_pretrain.evaluation import EvaluationConfig, softmax_weights


@pytest.mark.parametrize("classes", [2, 3])
def test_a_fitted_logistic_regression_becomes_a_softmax_head_with_the_same_probabilities(classes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype("float32")
    y = np.arange(60) % classes
    model = LogisticRegression().fit(x + y[:, None], y)
    kernel, bias = softmax_weights(model)
    assert kernel.shape == (5, classes) and bias.shape == (classes,)
    logits = x @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5)


def test_evaluation_settings_are_checked_when_set():
    with pytest.raises(ValueError, match="labels per class must be at least 1; got 0"):
        EvaluationConfig(labels_per_class=0)
    with pytest.raises(ValueError, match="evaluation.test_fraction must lie in"):
        EvaluationConfig(test_fraction=1.5)
