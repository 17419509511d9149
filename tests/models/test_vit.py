from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ViTEncoder, patchify, unpatchify
from keras_pretrain.models.vit import sincos_position_table


def small_encoder(**overrides):
    return ViTEncoder(**{"patch_size": 7, "hidden_dim": 32, "depth": 2, "num_heads": 2, **overrides})


def test_patchify_order_and_round_trip():
    images = np.arange(2 * 28 * 28, dtype="float32").reshape(2, 28, 28, 1)
    patches = ops.convert_to_numpy(patchify(images, 7))
    assert patches.shape == (2, 16, 49)
    np.testing.assert_array_equal(patches[0, 1], images[0, :7, 7:14, 0].reshape(-1))  # row-major patches
    np.testing.assert_array_equal(patches[1, 4], images[1, 7:14, :7, 0].reshape(-1))
    np.testing.assert_array_equal(ops.convert_to_numpy(unpatchify(patches, 7, 1)), images)


def test_encoder_shapes_full_and_subset(images):
    encoder = small_encoder()
    assert tuple(encoder(images).shape) == (8, 16, 32)
    tokens = encoder.embed_patches(images)
    assert tuple(tokens.shape) == (8, 16, 32)
    assert tuple(encoder.transform(tokens[:, :4]).shape) == (8, 4, 32)


def test_embedding_only_the_kept_patches_gives_the_tokens_of_those_patches(images):
    encoder = small_encoder()
    keep = np.random.default_rng(0).permuted(np.tile(np.arange(16), (8, 1)), axis=1)[:, :5].astype("int32")
    kept = ops.convert_to_numpy(encoder.embed_patches(images, keep))
    every = ops.convert_to_numpy(encoder.embed_patches(images))
    assert kept.shape == (8, 5, 32)
    np.testing.assert_allclose(kept, np.take_along_axis(every, keep[..., None], axis=1), atol=1e-5)


def test_position_table_is_set_on_every_backend(images):
    # On JAX an assign() in build() is silently lost; the table must come from the initializer.
    encoder = small_encoder()
    encoder(images)
    table = ops.convert_to_numpy(encoder.position_embedding.table)
    np.testing.assert_allclose(table, sincos_position_table(4, 32), atol=1e-6)
    assert np.abs(table).sum() > 1.0
    assert not encoder.position_embedding.table.trainable


def test_encoder_saves_and_loads(tmp_path, images):
    encoder = small_encoder()
    expected = ops.convert_to_numpy(encoder(images))
    encoder.save(tmp_path / "encoder.keras")
    loaded = keras.saving.load_model(tmp_path / "encoder.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(images)), expected, atol=1e-5)


def test_copy_is_independent(images):
    encoder = small_encoder()
    encoder(images)
    clone = encoder.copy()
    np.testing.assert_allclose(ops.convert_to_numpy(clone(images)), ops.convert_to_numpy(encoder(images)), atol=1e-6)
    clone.patch_projection.kernel.assign(np.zeros(clone.patch_projection.kernel.shape, "float32"))
    assert np.abs(ops.convert_to_numpy(encoder.patch_projection.kernel)).sum() > 0


@pytest.mark.parametrize("shape, message", [
    ((8, 28, 28), r"images\[\.\.\., None\]"),
    ((8, 32, 32, 1), r"Expected images of shape \(batch, 28, 28, 1\)"),
    ((8, 28, 28, 3), r"got shape \(8, 28, 28, 3\)"),
])
def test_wrong_image_shape_is_a_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        small_encoder()(np.zeros(shape, "uint8"))


def test_patch_size_must_divide_image_size():
    with pytest.raises(ValueError, match="not divisible by patch_size 5"):
        ViTEncoder(image_size=28, patch_size=5)


def test_layer_ids_follow_depth(images):
    encoder = small_encoder()
    encoder(images)
    ids = {v.path: encoder.layer_id(v.path) for v in encoder.trainable_variables}
    assert ids["vit_encoder/patch_projection/kernel"] == 0
    assert {i for p, i in ids.items() if "/block_1/" in p} == {2}
    assert max(ids.values()) == 3  # the final norm sits above the blocks


def test_weights_saved_by_earlier_versions_load():
    # Written by the encoder of commit 51cec7f, this config built, each weight (in get_weights order) set to
    # linspace(-1, 1, size) + its index, values no initializer gives, then save_weights.
    encoder = ViTEncoder(image_size=8, channels=1, patch_size=4, hidden_dim=8, depth=2, num_heads=2, mlp_ratio=2)
    encoder.build((None, 8, 8, 1))
    encoder.load_weights(Path(__file__).parent / "fixtures" / "vit_encoder_51cec7f.weights.h5")
    for i, weight in enumerate(encoder.get_weights()):
        np.testing.assert_array_equal(weight, np.linspace(-1, 1, weight.size, dtype="float32").reshape(weight.shape) + i)
