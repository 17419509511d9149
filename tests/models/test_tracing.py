import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.models.tracing import TracesOnce
from tests.objectives.test_masked_language_model import inputs, small_mlm, text_batch


def counting(model, method):
    """Count the Python calls of `model.<method>`: one per trace on TensorFlow and JAX, one per step eagerly."""
    calls = []
    original = getattr(model, method)
    setattr(model, method, lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_a_first_fit_of_one_step_runs_the_train_step_once():
    # On single-device TensorFlow without the mixin: twice, as the optimizer's state is made in the first trace.
    mlm = small_mlm()
    mlm.compile(optimizer="adamw")
    steps = counting(mlm, "train_step")
    batches = tf.data.Dataset.from_tensors(inputs(*text_batch(8, 32, 10)))  # a dict of specs, as text pipelines give
    mlm.fit(batches, epochs=1, verbose=0)
    assert len(steps) == 1


def test_a_classifier_with_metrics_traces_its_train_and_test_steps_once(images):
    # Its metrics' and loss's state, too, is made before tracing; validation then traces the test step once.
    encoder = ViTEncoder(image_size=28, channels=1, patch_size=7, hidden_dim=16, depth=1, num_heads=2)
    classifier = ImageClassifier(encoder, num_classes=2)
    classifier.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    train, test = counting(classifier, "train_step"), counting(classifier, "test_step")
    labels = np.arange(8) % 2
    classifier.fit(images, labels, batch_size=8, epochs=1, validation_data=(images, labels), verbose=0)
    assert len(train) == 1 and len(test) == 1


def test_training_is_what_it_is_when_the_state_is_made_while_tracing(monkeypatch):
    x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    y = x @ np.array([[1.0], [-2.0]], "float32")
    trained = []
    for keep_mixin in (True, False):
        if not keep_mixin:
            monkeypatch.delattr(TracesOnce, "_maybe_symbolic_build")  # Keras's own way
        keras.utils.set_random_seed(0)
        model = TracingModel()
        model.compile(optimizer="adamw", loss="mse", metrics=["mae"])
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history
        trained.append((model.get_weights(), model.optimizer.variables, history))
    (weights, slots, history), (keras_weights, keras_slots, keras_history) = trained
    assert history == keras_history
    for a, b in zip([*weights, *slots], [*keras_weights, *keras_slots]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TracesOnce acts on TensorFlow only; elsewhere Keras builds before tracing")
def test_input_of_unknown_rank_is_left_to_keras():
    # Such specs have no shape to build from: the state is made while tracing, as Keras does.
    model = TracingModel()
    model.build((None, 2))
    model.compile(optimizer="sgd", loss="mse")
    batches = tf.data.Dataset.from_generator(lambda: iter([(np.ones((3, 2), "float32"), np.zeros((3, 1), "float32"))]),
                                             output_signature=(tf.TensorSpec(None, "float32"), tf.TensorSpec((3, 1))))
    model.fit(batches, epochs=1, verbose=0)
    assert model.optimizer.built


class TracingModel(TracesOnce, keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def build(self, input_shape):
        self.dense.build((None, 2))

    def call(self, x):
        return self.dense(keras.ops.reshape(x, (-1, 2)))
