"""Vision Transformer encoder that can run on a subset of its patches."""

import keras
import numpy as np
from keras import ops
from keras_hub.layers import TransformerEncoder

from keras_pretrain.models.flat_projections import flat_projections
from keras_pretrain.models.gradient_barrier import gradient_barrier


def patchify(images, patch_size):
    """Split `(batch, height, width, channels)` images into flat patches.

    Returns `(batch, num_patches, patch_size * patch_size * channels)`, patches
    in row-major order, each patch flattened as (row, column, channel).

    Example:
    >>> patchify(np.zeros((2, 28, 28, 1)), 7).shape
    (2, 16, 49)
    """
    _, height, width, channels = images.shape
    rows, cols = height // patch_size, width // patch_size
    x = ops.reshape(images, (-1, rows, patch_size, cols, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, rows * cols, patch_size * patch_size * channels))


def unpatchify(patches, patch_size, channels):
    """Inverse of `patchify` for square images.

    Example:
    >>> unpatchify(patchify(np.zeros((2, 28, 28, 1)), 7), 7, channels=1).shape
    (2, 28, 28, 1)
    """
    num_patches = patches.shape[1]
    grid = int(round(num_patches**0.5))
    x = ops.reshape(patches, (-1, grid, grid, patch_size, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, grid * patch_size, grid * patch_size, channels))


def sincos_position_table(grid_size, dim):
    """The fixed 2-D sine-cosine position table of MAE, `(grid_size**2, dim)`."""
    if dim % 4:
        raise ValueError(f"Sine-cosine positions need a width divisible by 4; got {dim}.")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")

    def encode(positions):
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1).astype("float32")


@keras.saving.register_keras_serializable(package="keras_pretrain")
class SinCosPositionInitializer(keras.initializers.Initializer):
    """Initializer that fills a `(grid_size**2, dim)` weight with `sincos_position_table`.

    The table goes in the initializer, not in an `assign` during `build`, because
    JAX builds models in a stateless scope where such an assignment is lost.
    """

    def __init__(self, grid_size):
        self.grid_size = grid_size

    def __call__(self, shape, dtype=None):
        return ops.convert_to_tensor(sincos_position_table(self.grid_size, shape[-1]), dtype)

    def get_config(self):
        return {"grid_size": self.grid_size}


@keras.saving.register_keras_serializable(package="keras_pretrain")
class PositionEmbedding(keras.layers.Layer):
    """Adds a fixed 2-D sine-cosine position table to `(batch, grid**2, dim)` tokens.

    The layer owns the table, so it is saved with the model and is never a
    constant captured by a functional graph.

    Example:
    >>> PositionEmbedding(grid_size=4)(np.zeros((2, 16, 8))).shape
    (2, 16, 8)
    """

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = grid_size

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table",
            shape=(self.grid_size**2, input_shape[-1]),
            initializer=SinCosPositionInitializer(self.grid_size),
            trainable=False,
        )

    def call(self, tokens):
        return tokens + ops.cast(self.table, tokens.dtype)

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size}


def transformer_blocks(depth, width, num_heads, mlp_ratio, name):
    """Pre-norm transformer blocks (keras-hub's `TransformerEncoder`), named `{name}_{i}`; run them with `run_blocks`."""
    return [
        TransformerEncoder(
            intermediate_dim=width * mlp_ratio,
            num_heads=num_heads,
            activation="gelu",
            normalize_first=True,
            layer_norm_epsilon=1e-6,
            name=f"{name}_{i}",
        )
        for i in range(depth)
    ]


def run_blocks(blocks, tokens, training=False):
    """Run `blocks` one after the other, each reading the previous one's output through a `gradient_barrier`.

    The barrier makes JAX's backward pass on CPU faster, and `flat_projections`
    the blocks' projections on TensorFlow and JAX; neither changes a value beyond float
    rounding. On JAX it drops Keras masks, so these blocks take
    no padding mask. No blocks: the tokens come back unchanged.

    >>> run_blocks(transformer_blocks(2, 32, 2, 2, "block"), np.zeros((2, 16, 32))).shape
    (2, 16, 32)
    """
    with flat_projections():
        for block in blocks:
            tokens = block(gradient_barrier(tokens), training=training)
    return tokens


def check_image_array(images, image_shape):
    """Refuse, with a one-line fix, NumPy images a model reading `[0, 255]` pixels of `image_shape` would misread.

    Wrong rank or size, NaN or infinite values, and floats already in
    `[0, 1]` (which would be divided by 255 a second time) are errors;
    anything that is not a NumPy array (a `tf.data.Dataset`, a tensor) passes.

    Example:
    >>> check_image_array(x_train, (28, 28, 1))
    """
    if not isinstance(images, np.ndarray):
        return
    expected = tuple(image_shape)
    if images.ndim != 4 or images.shape[1:] != expected:
        hint = " Add a channel axis with images[..., None]." if images.ndim == 3 else ""
        raise ValueError(f"Expected images of shape (batch, {', '.join(map(str, expected))}); got {images.shape}.{hint}")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise ValueError("The images hold NaN or infinite values: fix or drop those images before training.")
        if images.size and images.max() <= 1.0:
            raise ValueError("The images are floats in [0, 1], but the model reads pixels in [0, 255]: pass "
                             "(images * 255).round().astype('uint8'), or keras_pretrain.data.ArrayImages(images).")


class ChecksImages:
    """Mixin for models on images: `fit`, `evaluate` and `predict` check NumPy inputs with `check_image_array`."""

    def _image_shape(self):
        encoder = self.encoder
        return encoder.image_size, encoder.image_size, encoder.channels

    def fit(self, x=None, *args, **kwargs):
        check_image_array(x, self._image_shape())
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        check_image_array(x, self._image_shape())
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        check_image_array(x, self._image_shape())
        return super().predict(x, *args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_pretrain")
class ViTEncoder(keras.Model):
    """Vision Transformer encoder over square images, without a class token.

    Takes images of any dtype in `[0, 255]` (uint8 straight from a data set is
    fine), shape `(batch, image_size, image_size, channels)`, and returns one
    token per patch, `(batch, num_patches, hidden_dim)`, after a final layer norm.
    The two halves of a forward pass are public so that an objective can drop
    patches in between: `embed_patches` then `transform`.

    Example:
    >>> encoder = ViTEncoder(image_size=28, channels=1, patch_size=7, hidden_dim=64)
    >>> encoder(np.zeros((2, 28, 28, 1), "uint8")).shape
    (2, 16, 64)
    >>> tokens = encoder.embed_patches(np.zeros((2, 28, 28, 1)))
    >>> encoder.transform(tokens[:, :4]).shape  # run on 4 of the 16 patches
    (2, 4, 64)
    """

    def __init__(
        self,
        image_size=28,
        channels=1,
        patch_size=7,
        hidden_dim=128,
        depth=4,
        num_heads=4,
        mlp_ratio=2,
        name="vit_encoder",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not divisible by patch_size {patch_size}: "
                f"choose a patch size that divides the image side (e.g. "
                f"{[p for p in range(2, image_size) if image_size % p == 0]})."
            )
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be divisible by num_heads {num_heads}.")
        self.image_size = image_size
        self.channels = channels
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2

        self.patch_projection = keras.layers.Dense(hidden_dim, name="patch_projection")
        self.position_embedding = PositionEmbedding(self.grid_size, name="position_embedding")
        self.blocks = transformer_blocks(depth, hidden_dim, num_heads, mlp_ratio, "block")
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

    def check_images(self, images):
        """Raise a clear error unless `images` has this encoder's image shape."""
        expected = (self.image_size, self.image_size, self.channels)
        shape = tuple(images.shape)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            hint = " Add a channel axis with images[..., None]." if len(shape) == 3 else ""
            raise ValueError(
                f"Expected images of shape (batch, {', '.join(map(str, expected))}); "
                f"got shape {shape}.{hint}"
            )

    def pixels(self, images):
        """Images scaled to `[0, 1]` floats: the space MAE reconstructs."""
        self.check_images(images)
        return ops.cast(images, self.compute_dtype) / 255.0

    def embed_patches(self, images, keep=None):
        """Images -> position-embedded patch tokens `(batch, num_patches, hidden_dim)`.

        With `keep`, `(batch, k)` patch indices, only those patches' tokens, in
        that order, `(batch, k, hidden_dim)`: what gathering the full tokens
        gives, with the projection (and its gradient) on `k` patches, not all.
        """
        patches = patchify(self.pixels(images), self.patch_size)
        if keep is None:
            return self.position_embedding(self.patch_projection(patches))
        if not self.position_embedding.built:  # its table is read directly, not through a call that builds it
            self.position_embedding.build((None, self.num_patches, self.hidden_dim))
        kept = ops.take_along_axis(patches, keep[..., None], axis=1)
        positions = ops.take(self.position_embedding.table, keep, axis=0)
        return self.patch_projection(kept) + ops.cast(positions, self.patch_projection.compute_dtype)

    def transform(self, tokens, training=False):
        """Run the transformer blocks and final norm on any subset of patch tokens."""
        return self.final_norm(run_blocks(self.blocks, tokens, training))

    def hidden_states(self, tokens, training=False):
        """Every block's output for `tokens` (before the final norm): the targets of latent prediction."""
        states = []
        for block in self.blocks:
            tokens = run_blocks([block], tokens, training)
            states.append(tokens)
        return states

    def call(self, images, training=False):
        return self.transform(self.embed_patches(images), training=training)

    def build(self, input_shape):
        self.check_images(keras.KerasTensor(input_shape))
        tokens_shape = (input_shape[0], self.num_patches, self.hidden_dim)
        self.patch_projection.build((input_shape[0], self.num_patches, self.patch_size**2 * self.channels))
        self.position_embedding.build(tokens_shape)
        for block in self.blocks:
            block.build(tokens_shape)
        self.final_norm.build(tokens_shape)
        self.built = True

    def layer_id(self, variable_path):
        """Depth of a variable for layer-wise learning-rate decay.

        0 for the patch and position embeddings, `i + 1` for block `i`,
        `depth + 1` for everything after the blocks.
        """
        for i, block in enumerate(self.blocks):
            if f"/{block.name}/" in f"/{variable_path}":
                return i + 1
        if "patch_projection" in variable_path or "position_embedding" in variable_path:
            return 0
        return self.depth + 1

    def copy(self, name=None):
        """A new encoder with the same config (and `name`, if given) and a copy of the weights."""
        clone = type(self).from_config({**self.get_config(), **({"name": name} if name else {})})
        clone.build((None, self.image_size, self.image_size, self.channels))
        clone.set_weights(self.get_weights())
        return clone

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
        }
