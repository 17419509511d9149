"""Patch masks the image objectives share: random (MAE) and in square blocks (SimMIM), from uniform noise.

Both take noise drawn per replica (`keras_pretrain.distribute.replica_uniform`)
or fed in by a test, so the same noise always gives the same mask.

Example:
>>> noise = replica_uniform((batch, blocks_per_image), seed=seed_generator)
>>> mask = block_mask(noise, grid_size=8, block_size=2, num_masked_blocks=10)  # (batch, 64), 1 = masked
>>> order = visible_first(mask, ...)  # indices that put the visible patches first
"""

from keras import ops


def random_mask(noise, num_masked):
    """`(batch, n)` float mask with `num_masked` ones per row: the patches with the highest noise.

    Example:
    >>> random_mask(np.array([[0.1, 0.9, 0.5, 0.3]]), 2)    # [[0., 1., 1., 0.]]
    """
    rank = ops.argsort(ops.argsort(noise, axis=1), axis=1)
    return ops.cast(rank >= ops.shape(noise)[1] - num_masked, "float32")


def block_mask(noise, grid_size, block_size, num_masked_blocks):
    """`(batch, grid_size**2)` float mask made of `block_size` x `block_size` blocks of patches.

    `noise` is `(batch, (grid_size // block_size)**2)`, one value per block;
    the `num_masked_blocks` blocks with the highest noise are masked (SimMIM's
    mask generator draws coarse cells and upsamples them in the same way).
    """
    if grid_size % block_size:
        raise ValueError(f"The patch grid ({grid_size} x {grid_size}) does not divide into blocks of {block_size}.")
    cells = grid_size // block_size
    coarse = ops.reshape(random_mask(noise, num_masked_blocks), (-1, cells, 1, cells, 1))
    fine = ops.broadcast_to(coarse, (ops.shape(coarse)[0], cells, block_size, cells, block_size))
    return ops.reshape(fine, (-1, grid_size * grid_size))


def visible_first(mask, noise):
    """Indices `(batch, n)` that put each row's visible patches first (in `noise` order), then the masked ones.

    With the same number of masked patches in every row, the first
    `n - num_masked` indices of a row are exactly its visible patches.
    """
    return ops.argsort(ops.cast(mask, "float32") * 2.0 + ops.cast(noise, "float32"), axis=1)


def num_masked(count, ratio):
    """How many of `count` patches (or blocks) a `ratio` masks: at least one, and at least one left visible."""
    masked = int(round(count * ratio))
    if not 0 < masked < count:
        raise ValueError(
            f"mask_ratio {ratio} masks {masked} of {count}: it must mask at least one and leave at least one visible."
        )
    return masked


def gather_tokens(tokens, indices):
    """`tokens[b, indices[b, i]]` for `(batch, n, width)` tokens and `(batch, k)` indices: `(batch, k, width)`."""
    # Indices broadcast over the width: JAX then gathers whole rows instead of building a
    # (batch, k, width) index array and gathering element by element.
    return ops.take_along_axis(tokens, indices[..., None], axis=1)
