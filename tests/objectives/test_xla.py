import keras
import numpy as np
import pytest

from tests.objectives.test_masked_autoencoder import small_mae
from tests.objectives.test_masked_language_model import inputs, small_mlm, text_batch

BACKEND = keras.backend.backend()


@pytest.mark.parametrize("make", [small_mae, small_mlm], ids=["mae", "mlm"])
@pytest.mark.skipif(BACKEND == "torch", reason="torch trains eagerly by default (Keras's jit_compile='auto'): no compiled step")
def test_default_compiled_step_trains_as_an_uncompiled_one(make, images):
    # XLA must not change the masks: other numbers from the same seed would change the loss and the update.
    x = images if make is small_mae else inputs(*text_batch(8, 16, 10))
    compiled, eager = make(), make()
    compiled(x), eager(x)
    eager.set_weights(compiled.get_weights())
    compiled.compile(optimizer="adam")
    eager.compile(optimizer="adam", jit_compile=False)
    assert compiled.jit_compile and not eager.jit_compile
    for _ in range(2):  # the second step draws from the advanced seed state
        compiled_loss = compiled.train_on_batch(x, return_dict=True)["loss"]
        eager_loss = eager.train_on_batch(x, return_dict=True)["loss"]
        np.testing.assert_allclose(compiled_loss, eager_loss, rtol=1e-4)
    for after, expected in zip(compiled.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(after, expected, atol=1e-5)


def test_auto_keeps_keras_choice_with_run_eagerly_and_passes_an_explicit_value():
    mae = small_mae()
    mae.compile(optimizer="adam", run_eagerly=True)
    assert not mae.jit_compile
    mae.compile(optimizer="adam", jit_compile=False)
    assert not mae.jit_compile
    mae.compile(optimizer="adam")
    assert mae.jit_compile == (BACKEND != "torch")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute strategies exist on TensorFlow only")
def test_auto_is_off_under_tf_distribute_as_in_keras():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        mae = small_mae()
        mae.compile(optimizer="adam")
    assert not mae.jit_compile
    mae.compile(optimizer="adam")  # built in the strategy's scope, compiled outside it
    assert not mae.jit_compile


def test_a_saved_compiled_objective_loads_compiled(tmp_path, images):
    mae = small_mae()
    mae.compile(optimizer=keras.optimizers.AdamW(3e-4))
    mae.train_on_batch(images)
    mae.save(tmp_path / "mae.keras")
    loaded = keras.saving.load_model(tmp_path / "mae.keras")
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.AdamW)
    assert loaded.optimizer.built and float(loaded.optimizer.learning_rate) == pytest.approx(3e-4)
    assert loaded.jit_compile == mae.jit_compile
    for restored, trained in zip(loaded.optimizer.variables, mae.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), keras.ops.convert_to_numpy(trained))
