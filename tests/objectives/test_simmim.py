import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ViTEncoder
from keras_pretrain.models.vit import patchify
from keras_pretrain.objectives import SimMIM


def small_simmim(mask_ratio=0.5, mask_block=2, seed=1):
    encoder = ViTEncoder(patch_size=7, hidden_dim=32, depth=1, num_heads=2)  # a 4 x 4 patch grid
    return SimMIM(encoder, mask_ratio=mask_ratio, mask_block=mask_block, seed=seed)


def numpy_block_mask(noise, grid, block, masked_blocks):
    """SimMIM's mask generator: the highest-noise coarse cells, each upsampled to a block of patches."""
    cells = grid // block
    coarse = np.zeros(noise.shape)
    np.put_along_axis(coarse, np.argsort(-noise, axis=1)[:, :masked_blocks], 1.0, axis=1)
    coarse = coarse.reshape(-1, cells, cells)
    return np.repeat(np.repeat(coarse, block, axis=1), block, axis=2).reshape(len(noise), -1)


def test_block_masks_match_the_numpy_reference(images):
    simmim = small_simmim(mask_ratio=0.5, mask_block=2)
    noise = np.random.default_rng(0).random((8, 4)).astype("float32")
    mask = ops.convert_to_numpy(simmim(images, noise=noise)["mask"])
    np.testing.assert_array_equal(mask, numpy_block_mask(noise, 4, 2, 2))
    assert (mask.sum(1) == 8).all()  # 2 of 4 blocks of 2 x 2 patches
    drawn = ops.convert_to_numpy(small_simmim(mask_ratio=0.75, mask_block=1)(images, training=True)["mask"])
    assert (drawn.sum(1) == 12).all() and len({row.tobytes() for row in drawn}) > 1


def test_the_encoder_sees_mask_tokens_not_the_masked_pixels(images):
    simmim = small_simmim()
    noise = np.random.default_rng(0).random((8, 4)).astype("float32")
    first = ops.convert_to_numpy(simmim(images, noise=noise)["pixels"])
    mask = numpy_block_mask(noise, 4, 2, 2)
    changed = ops.convert_to_numpy(patchify(images.astype("float32"), 7))
    changed[mask.astype(bool)] = 255.0 - changed[mask.astype(bool)]  # scramble only the masked patches
    changed = ops.convert_to_numpy(ops.reshape(ops.transpose(ops.reshape(changed, (8, 4, 4, 7, 7, 1)),
                                                             (0, 1, 3, 2, 4, 5)), (8, 28, 28, 1)))
    np.testing.assert_allclose(ops.convert_to_numpy(simmim(changed, noise=noise)["pixels"]), first, atol=1e-5)
    assert not np.allclose(ops.convert_to_numpy(simmim(255.0 - images.astype("float32"), noise=noise)["pixels"]), first)


def test_loss_is_the_mean_absolute_pixel_error_of_masked_patches(images):
    simmim = small_simmim()
    outputs = {k: ops.convert_to_numpy(v) for k, v in simmim(images, training=True).items()}
    target = images.reshape(8, 4, 7, 4, 7, 1).transpose(0, 1, 3, 2, 4, 5).reshape(8, 16, 49) / 255.0
    mask = outputs["mask"]
    expected = (np.abs(outputs["pixels"] - target).mean(-1) * mask).sum() / mask.sum()
    loss = ops.convert_to_numpy(simmim.compute_loss(images, None, outputs))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_fit_learns_and_a_bad_block_size_is_refused(images):
    simmim = small_simmim(seed=0)
    simmim.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = simmim.fit(np.repeat(images, 4, axis=0), batch_size=8, epochs=6, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="mask_block 3 does not divide the 4 x 4 patch grid: choose one of"):
        small_simmim(mask_block=3)
