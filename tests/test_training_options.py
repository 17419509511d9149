"""Training options change what they should: dtype policies, gradient accumulation, clipping."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.config import ConfigError
from keras_pretrain.optimizers import make_adamw
from keras_pretrain.pipelines import ImageDataConfig, ImagePipeline, ImagePipelineConfig, PretrainConfig
from keras_pretrain.pipelines.images import MaeConfig, ViTConfig


def image_pipeline(tmp_path, **pretrain):
    config = ImagePipelineConfig(data=ImageDataConfig(image_size=28, channels=1),
                                 encoder=ViTConfig(patch_size=7, hidden_dim=16, depth=1, num_heads=2),
                                 mae=MaeConfig(decoder_dim=16), pretrain=PretrainConfig(**pretrain),
                                 output_dir=str(tmp_path / "run"))
    return ImagePipeline(config, verbose=0)


@pytest.mark.parametrize("policy, compute, optimizer", [
    ("mixed_bfloat16", "bfloat16", keras.optimizers.AdamW),
    ("mixed_float16", "float16", keras.optimizers.LossScaleOptimizer),
])
def test_a_mixed_policy_computes_in_half_precision_and_keeps_float32_weights(tmp_path, images, policy, compute, optimizer):
    if compute == "float16" and keras.backend.backend() == "jax":  # XLA:CPU has no float16 matrix product
        with pytest.raises(ConfigError, match="mixed_float16 does not run on jax's CPU .*: use mixed_bfloat16"):
            image_pipeline(tmp_path, dtype_policy=policy)
        return
    model = image_pipeline(tmp_path, dtype_policy=policy).pretrain_model((28, 28, 1), total_steps=10)
    assert keras.config.dtype_policy().name == "float32"  # only the pre-training model was built under it
    assert ops.convert_to_numpy(model.encoder(images)).dtype.name == compute or \
        str(model.encoder(images).dtype).endswith(compute)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert isinstance(model.optimizer, optimizer)  # float16 gets Keras's loss scaling
    history = model.fit(images, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def dense_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.build((None, 3))
    return model


def test_accumulating_k_steps_is_one_step_on_a_k_times_larger_batch():
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    results = []
    for batch_size, steps in ((2, 4), (8, None)):
        model = dense_model()
        # A schedule so long that the learning rate stays put over these few steps.
        model.compile(optimizer=make_adamw(model, 1e-2, total_steps=10**9, warmup_steps=0,
                                           gradient_accumulation_steps=steps), loss="mse")
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        results.append([ops.convert_to_numpy(w) for w in model.get_weights()])
    for accumulated, large in zip(*results):
        np.testing.assert_allclose(accumulated, large, atol=1e-6)
    assert not np.allclose(results[0][0], dense_model().get_weights()[0])  # and it did train


def test_clipping_bounds_the_gradient_the_optimizer_sees():
    x, y = np.full((4, 3), 100.0, "float32"), np.full((4, 2), -100.0, "float32")  # a huge gradient
    for clip in (None, 0.5):
        model = dense_model()
        optimizer = make_adamw(model, 1e-3, total_steps=10, global_clipnorm=clip)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        # Adam's first moment after one step is (1 - beta_1) times the gradient it was given.
        moments = [v for v in optimizer.variables if "momentum" in v.path]
        norm = np.sqrt(sum(float(np.sum(ops.convert_to_numpy(m) ** 2)) for m in moments)) / (1 - optimizer.beta_1)
        assert (norm <= 0.5 + 1e-4) == (clip is not None), norm


def test_the_pipeline_passes_its_options_to_the_optimizer(tmp_path):
    model = image_pipeline(tmp_path, gradient_accumulation_steps=4, clipnorm=1.0).pretrain_model((28, 28, 1), 10)
    assert model.optimizer.gradient_accumulation_steps == 4 and model.optimizer.global_clipnorm == 1.0
    with pytest.raises(ValueError, match="pretrain.dtype_policy must be one of"):
        PretrainConfig(dtype_policy="int8")
