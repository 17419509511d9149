import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ViTEncoder
from keras_pretrain.objectives import MaskedAutoencoder


def small_mae(mask_ratio=0.75, norm_pix_loss=False, seed=1):
    encoder = ViTEncoder(patch_size=7, hidden_dim=32, depth=1, num_heads=2)
    return MaskedAutoencoder(encoder, decoder_dim=16, decoder_heads=2, mask_ratio=mask_ratio,
                             norm_pix_loss=norm_pix_loss, seed=seed)


def numpy(outputs):
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


@pytest.mark.parametrize("mask_ratio, masked", [(0.75, 12), (0.5, 8), (0.25, 4)])
def test_exact_number_of_masked_patches_per_sample(images, mask_ratio, masked):
    outputs = numpy(small_mae(mask_ratio)(images, training=True))
    assert outputs["pixels"].shape == (8, 16, 49)  # decoder predicts every patch's pixels
    assert outputs["mask"].shape == (8, 16)
    np.testing.assert_array_equal(outputs["mask"].sum(axis=1), masked)
    assert set(np.unique(outputs["mask"])) == {0.0, 1.0}


def test_masks_differ_between_samples_and_calls(images):
    mae = small_mae()
    first, second = (numpy(mae(images, training=True))["mask"] for _ in range(2))
    assert not np.array_equal(first, second)
    assert len({row.tobytes() for row in first}) > 1


def test_fit_draws_new_masks_every_step(images):
    # The seed generator's state is what makes each step's mask new; fit must advance it.
    mae = small_mae()
    mae.compile(optimizer="adam")
    before = ops.convert_to_numpy(mae.seed_generator.state).copy()
    mae.fit(images, batch_size=4, epochs=1, verbose=0)
    after_one = ops.convert_to_numpy(mae.seed_generator.state).copy()
    mae.fit(images, batch_size=4, epochs=1, verbose=0)
    after_two = ops.convert_to_numpy(mae.seed_generator.state)
    assert not np.array_equal(before, after_one) and not np.array_equal(after_one, after_two)


def test_fed_noise_fixes_the_mask(images):
    mae = small_mae()
    noise = np.random.default_rng(3).random((8, 16)).astype("float32")
    expected = (np.argsort(np.argsort(noise, axis=1), axis=1) >= 4).astype("float32")
    for _ in range(2):
        np.testing.assert_array_equal(numpy(mae(images, noise=noise))["mask"], expected)


def test_loss_counts_removed_patches_only(images):
    mae = small_mae()
    outputs = numpy(mae(images, training=True))
    target = ops.convert_to_numpy(mae.target_patches(images))
    mask = outputs["mask"][..., None]
    # Exact at removed patches, garbage at visible ones: zero loss.
    exact_where_masked = target * mask + 7.0 * (1 - mask)
    loss = mae.compute_loss(images, None, {"pixels": exact_where_masked, "mask": outputs["mask"]})
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(0.0, abs=1e-7)
    # An error of 1 at removed patches only: loss 1.
    off_by_one = target + mask
    loss = mae.compute_loss(images, None, {"pixels": off_by_one, "mask": outputs["mask"]})
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(1.0, rel=1e-5)


def test_no_masked_patch_gives_zero_not_nan(images):
    mae = small_mae()
    target = ops.convert_to_numpy(mae.target_patches(images))
    loss = mae.compute_loss(images, None, {"pixels": target + 1.0, "mask": np.zeros((8, 16), "float32")})
    assert float(ops.convert_to_numpy(loss)) == 0.0


def test_norm_pix_loss_matches_numpy_reference(images):
    mae = small_mae(norm_pix_loss=True)
    outputs = numpy(mae(images, training=True))
    patches = images.astype("float64").reshape(8, 4, 7, 4, 7, 1).transpose(0, 1, 3, 2, 4, 5).reshape(8, 16, 49) / 255
    target = (patches - patches.mean(-1, keepdims=True)) / np.sqrt(patches.var(-1, keepdims=True) + 1e-6)
    per_patch = ((outputs["pixels"] - target) ** 2).mean(-1)
    expected = (per_patch * outputs["mask"]).sum() / outputs["mask"].sum()
    loss = mae.compute_loss(images, None, outputs)
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-4)


def test_encoder_sees_only_visible_patches(images):
    mae = small_mae()
    seen = []
    original = mae.encoder.transform
    mae.encoder.transform = lambda tokens, training=False: seen.append(tuple(tokens.shape)) or original(tokens)
    mae(images)
    assert seen == [(8, 4, 32)]


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5, 0.99])
def test_mask_ratio_out_of_range_is_a_clear_error(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        small_mae(mask_ratio=ratio)


def test_fit_without_labels_learns(images):
    data = np.repeat(images[:2], 32, axis=0)
    mae = small_mae()
    mae.compile(optimizer=keras.optimizers.AdamW(3e-3))
    losses = mae.fit(data, batch_size=16, epochs=6, verbose=0).history["loss"]
    assert losses[-1] < 0.6 * losses[0]


def test_a_decoder_without_blocks_is_a_linear_decoder(images):
    mae = MaskedAutoencoder(ViTEncoder(patch_size=7, hidden_dim=32, depth=1, num_heads=2), decoder_dim=16,
                            decoder_depth=0, seed=1)
    assert mae.decoder_blocks == []
    assert tuple(mae(images)["pixels"].shape) == (8, 16, 49)


def test_reconstruct_keeps_visible_patches(images):
    mae = small_mae()
    shown = mae.reconstruct(images)
    assert shown["original"].shape == shown["reconstruction"].shape == shown["masked"].shape == (8, 28, 28, 1)
    np.testing.assert_allclose(shown["original"], images / 255.0, atol=1e-6)
    kept = shown["masked"] != 0.5
    np.testing.assert_allclose(shown["reconstruction"][kept], shown["original"][kept], atol=1e-6)


def test_save_and_load_round_trip(tmp_path, images):
    mae = small_mae()
    noise = np.random.default_rng(0).random((8, 16)).astype("float32")
    expected = numpy(mae(images, noise=noise))["pixels"]
    mae.save(tmp_path / "mae.keras")
    loaded = keras.saving.load_model(tmp_path / "mae.keras")
    np.testing.assert_allclose(numpy(loaded(images, noise=noise))["pixels"], expected, atol=1e-5)
    assert loaded.mask_ratio == 0.75 and loaded.encoder.hidden_dim == 32


@pytest.mark.parametrize("make, message", [
    (lambda x: x.astype("float32") / 255.0, r"floats in \[0, 1\], but the model reads pixels in \[0, 255\]"),
    (lambda x: x[..., 0], r"got \(8, 28, 28\). Add a channel axis"),
    (lambda x: np.repeat(x, 3, axis=-1), r"Expected images of shape \(batch, 28, 28, 1\); got \(8, 28, 28, 3\)"),
    (lambda x: np.where(x > 128, np.nan, x.astype("float32")), "NaN or infinite values"),
])
def test_inputs_a_model_would_misread_are_refused_before_training(images, make, message):
    mae = small_mae()
    mae.compile(optimizer="adam")
    with pytest.raises(ValueError, match=message):
        mae.fit(make(images), batch_size=4, epochs=1, verbose=0)
    history = mae.fit(images.astype("float32"), batch_size=4, epochs=1, verbose=0)  # floats in [0, 255] are fine
    assert np.isfinite(history.history["loss"][0])
