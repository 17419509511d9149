import keras
import numpy as np
import pytest

from keras_pretrain.models import ViTEncoder
from keras_pretrain.objectives import LatentMaskedPrediction, MaskedAutoencoder, SimMIM
from keras_pretrain.throughput import Throughput, count_parameters, matmul_peak_flops, transformer_flops


def test_the_logs_carry_samples_per_second_and_mfu(images):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    throughput = Throughput(4, flops_per_sample=1e6, peak_flops=1e9)
    history = model.fit(images, np.zeros((8, 2)), batch_size=4, epochs=2, verbose=0, callbacks=[throughput, Record()])
    assert len(seen) == 4 and all(log["samples_per_second"] > 0 for log in seen)
    rates = history.history["samples_per_second"]
    assert len(rates) == 2
    np.testing.assert_allclose(history.history["mfu"], np.array(rates) * 1e6 / 1e9)


def test_flops_count_what_each_objective_computes():
    encoder = lambda: ViTEncoder(patch_size=7, hidden_dim=32, depth=2, num_heads=2)  # noqa: E731
    mae = MaskedAutoencoder(encoder(), decoder_dim=16, mask_ratio=0.75)
    mae.build((None, 28, 28, 1))
    blocks = count_parameters(*mae.encoder.blocks, mae.encoder.final_norm)
    assert blocks == sum(int(np.prod(w.shape)) for b in mae.encoder.blocks for w in b.trainable_weights) + 64
    # The MAE encoder sees 4 of the 16 patches; SimMIM's sees all 16 and costs more.
    assert mae.flops_per_sample() >= transformer_flops(blocks, 4, 2, 32)
    simmim = SimMIM(encoder(), mask_ratio=0.5, mask_block=2)
    simmim.build((None, 28, 28, 1))
    latent = LatentMaskedPrediction(encoder(), predictor_dim=16)
    latent.build((None, 28, 28, 1))
    assert transformer_flops(blocks, 16, 2, 32) < simmim.flops_per_sample()
    assert mae.flops_per_sample() < latent.flops_per_sample() < mae.flops_per_sample() + transformer_flops(blocks, 16, 2, 32)
    assert transformer_flops(10, 4, 1, 8) == 6 * 10 * 4 + 12 * 8 * 16


def test_the_peak_is_a_measured_rate():
    peak = matmul_peak_flops(size=256, repeats=2)
    assert 1e8 < peak < 1e14
    assert 1e7 < matmul_peak_flops(size=128, repeats=1, dtype="bfloat16") < 1e14


def test_the_peak_is_measured_in_the_models_compute_dtype(monkeypatch, images):
    from keras_pretrain import throughput

    dtypes = []
    monkeypatch.setattr(throughput, "matmul_peak_flops", lambda dtype: dtypes.append(dtype) or 1e9)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(images, np.zeros((8, 2)), batch_size=4, epochs=1, verbose=0,
              callbacks=[Throughput(4, flops_per_sample=1e6)])
    assert dtypes == ["bfloat16"]  # not float32: a mixed_bfloat16 model's products run in bfloat16
    with pytest.raises(TypeError):
        Throughput()  # how many samples a step processes must be given
