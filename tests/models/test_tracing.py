import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.objectives import MaskedAutoencoder
from tests.objectives.test_masked_language_model import inputs, small_mlm, text_batch


def counting(model, method):
    """Count the Python calls of `model.<method>`: one per trace on TensorFlow and JAX, one per step eagerly."""
    calls = []
    original = getattr(model, method)
    setattr(model, method, lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def small_mae():
    encoder = ViTEncoder(image_size=28, channels=1, patch_size=7, hidden_dim=16, depth=1, num_heads=2)
    mae = MaskedAutoencoder(encoder, decoder_dim=16, seed=0)
    mae.build((None, 28, 28, 1))
    mae.compile(optimizer="adamw")
    return mae


def test_a_first_fit_of_one_step_runs_the_train_step_once(images):
    # On single-device TensorFlow without the mixin: twice, as the optimizer's state is made in the first trace.
    mae = small_mae()
    steps = counting(mae, "train_step")
    mae.fit(images, batch_size=8, epochs=1, verbose=0)
    assert len(steps) == 1

    mlm = small_mlm()
    mlm.compile(optimizer="adamw")
    steps = counting(mlm, "train_step")
    batches = tf.data.Dataset.from_tensors(inputs(*text_batch(8, 32, 10)))  # a dict of specs, as the text pipelines give
    mlm.fit(batches, epochs=1, verbose=0)
    assert len(steps) == 1


def test_a_classifier_with_metrics_traces_its_train_and_test_steps_once(images):
    # Its metrics' and loss's state, too, is made before tracing; validation then traces the test step once.
    classifier = ImageClassifier(small_mae().encoder, num_classes=2)
    classifier.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    train, test = counting(classifier, "train_step"), counting(classifier, "test_step")
    labels = np.arange(8) % 2
    classifier.fit(images, labels, batch_size=8, epochs=1, validation_data=(images, labels), verbose=0)
    assert len(train) == 1 and len(test) == 1


def test_training_is_what_it_is_when_the_state_is_made_while_tracing(images, monkeypatch):
    trained = []
    for keep_mixin in (True, False):
        if not keep_mixin:
            monkeypatch.delattr(TracesOnce, "_maybe_symbolic_build")  # Keras's own way
        keras.utils.set_random_seed(0)
        mae = small_mae()
        mae.fit(images, batch_size=4, epochs=2, verbose=0)
        trained.append(mae.get_weights())
    for a, b in zip(*trained):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data specs without a rank are TensorFlow's")
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

    def call(self, x):
        return self.dense(tf.reshape(x, (-1, 2)))
