"""Masked autoencoder (MAE, He et al. 2021) as a `keras.Model` you `fit` on unlabeled images."""

import keras
from keras import ops

from keras_pretrain.distribute import replica_uniform
from keras_pretrain.models.flat_projections import flat_projections
from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.models.vit import (
    ChecksImages,
    PositionEmbedding,
    patchify,
    run_blocks,
    transformer_blocks,
    unpatchify,
)
from keras_pretrain.objectives.masking import gather_tokens
from keras_pretrain.objectives.xla import CompilesWithXla
from keras_pretrain.throughput import count_parameters, transformer_flops


@keras.saving.register_keras_serializable(package="keras_pretrain")
class MaskedAutoencoder(CompilesWithXla, TracesOnce, ChecksImages, keras.Model):
    """Masked autoencoder pre-training around a `ViTEncoder`.

    Every step, each image loses a random `mask_ratio` of its patches (drawn
    from a `keras.random.SeedGenerator`, so afresh each step on every backend).
    The encoder sees only the visible patches; a light decoder gets the encoded
    patches plus a learned mask token at every removed position and predicts the
    pixels of every patch. The loss is the mean squared error over removed
    patches only, against raw pixels in `[0, 1]` or, with `norm_pix_loss`,
    against each patch normalised by its own mean and variance.

    `call` returns `{"pixels": (batch, num_patches, patch_pixels), "mask":
    (batch, num_patches)}` with mask 1 where a patch was removed. Pass `noise`
    (uniform, `(batch, num_patches)`) to fix the masks, as parity tests do.

    Example:
    >>> encoder = ViTEncoder(image_size=28, channels=1, patch_size=7, hidden_dim=64, depth=2)
    >>> mae = MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1)
    >>> mae.compile(optimizer="adamw")
    >>> mae.fit(images_uint8, batch_size=128, epochs=1)  # no labels
    >>> classifier_encoder = mae.encoder
    """

    def __init__(
        self,
        encoder,
        decoder_dim=64,
        decoder_depth=1,
        decoder_heads=2,
        mask_ratio=0.75,
        norm_pix_loss=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be strictly between 0 and 1; got {mask_ratio}.")
        self.num_visible = int(round(encoder.num_patches * (1.0 - mask_ratio)))
        if not 0 < self.num_visible < encoder.num_patches:
            raise ValueError(
                f"mask_ratio {mask_ratio} leaves {self.num_visible} of {encoder.num_patches} "
                "patches visible: it must leave at least one visible and mask at least one."
            )
        self.encoder = encoder
        self.decoder_dim = decoder_dim
        self.decoder_depth = decoder_depth
        self.decoder_heads = decoder_heads
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        patch_pixels = encoder.patch_size**2 * encoder.channels
        self.decoder_embed = keras.layers.Dense(decoder_dim, name="decoder_embed")
        self.mask_token = self.add_weight(
            name="mask_token",
            shape=(1, 1, decoder_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.decoder_position = PositionEmbedding(encoder.grid_size, name="decoder_position")
        self.decoder_blocks = transformer_blocks(decoder_depth, decoder_dim, decoder_heads, 4, "decoder_block")
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")
        self.decoder_pred = keras.layers.Dense(patch_pixels, name="decoder_pred")
        self.patch_loss = keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")

    @property
    def pretrained_encoder(self):
        """The encoder to fine-tune or probe."""
        return self.encoder

    def build(self, input_shape):
        if not self.encoder.built:  # a deserialized encoder comes built
            self.encoder.build(input_shape)
        batch, num_patches = input_shape[0], self.encoder.num_patches
        self.decoder_embed.build((batch, num_patches, self.encoder.hidden_dim))
        decoder_shape = (batch, num_patches, self.decoder_dim)
        for layer in [self.decoder_position, *self.decoder_blocks, self.decoder_norm]:
            layer.build(decoder_shape)
        self.decoder_pred.build(decoder_shape)
        self.built = True

    @flat_projections()
    def call(self, images, noise=None, training=False):
        batch_size, num_patches = ops.shape(images)[0], self.encoder.num_patches
        if noise is None:
            noise = replica_uniform((batch_size, num_patches), seed=self.seed_generator)
        # Sorting uniform noise gives each sample its own random permutation; the
        # first num_visible patches of it stay visible.
        shuffle = ops.argsort(noise, axis=1)
        restore = ops.argsort(shuffle, axis=1)
        keep = shuffle[:, : self.num_visible]
        latent = self.encoder.transform(self.encoder.embed_patches(images, keep), training=training)

        x = self.decoder_embed(latent)
        mask_tokens = ops.broadcast_to(
            ops.cast(self.mask_token, x.dtype), (batch_size, num_patches - self.num_visible, self.decoder_dim)
        )
        x = ops.concatenate([x, mask_tokens], axis=1)
        x = gather_tokens(x, restore)
        x = self.decoder_position(x)
        x = run_blocks(self.decoder_blocks, x, training)
        pixels = self.decoder_pred(self.decoder_norm(x))
        mask = ops.cast(restore >= self.num_visible, pixels.dtype)
        return {"pixels": pixels, "mask": mask}

    def flops_per_sample(self):
        """Training FLOPs per image: the encoder on the visible patches, the decoder on all of them."""
        encoder, patches = self.encoder, self.encoder.num_patches
        stem = 6 * count_parameters(encoder.patch_projection) * self.num_visible
        body = transformer_flops(count_parameters(*encoder.blocks, encoder.final_norm), self.num_visible,
                                 encoder.depth, encoder.hidden_dim)
        decoder = transformer_flops(count_parameters(*self.decoder_blocks, self.decoder_norm, self.decoder_pred),
                                    patches, self.decoder_depth, self.decoder_dim)
        return stem + body + 6 * count_parameters(self.decoder_embed) * self.num_visible + decoder

    def target_patches(self, images):
        """What the decoder is trained to predict, `(batch, num_patches, patch_pixels)`."""
        target = patchify(self.encoder.pixels(images), self.encoder.patch_size)
        if self.norm_pix_loss:
            mean = ops.mean(target, axis=-1, keepdims=True)
            var = ops.var(target, axis=-1, keepdims=True)
            target = (target - mean) / ops.sqrt(var + 1e-6)
        return target

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        pixels = ops.cast(y_pred["pixels"], "float32")
        target = ops.cast(self.target_patches(x), "float32")
        # Per-patch mean squared error averaged over removed patches (0, not NaN, when there are
        # none); a Keras loss also scales itself for tf.distribute.
        return self.patch_loss(target, pixels, sample_weight=ops.cast(y_pred["mask"], "float32"))

    def reconstruct(self, images, noise=None):
        """Masked inputs, reconstructions and originals as images in `[0, 1]`, for plotting.

        The reconstruction shows the decoder's prediction at removed patches and
        the original pixels at visible ones, as in the MAE paper's figures.
        """
        outputs = self(images, noise=noise, training=False)
        patch, channels = self.encoder.patch_size, self.encoder.channels
        original = patchify(self.encoder.pixels(images), patch)
        predicted = outputs["pixels"]
        if self.norm_pix_loss:  # undo the per-patch normalisation with the true patch statistics
            mean = ops.mean(original, axis=-1, keepdims=True)
            std = ops.sqrt(ops.var(original, axis=-1, keepdims=True) + 1e-6)
            predicted = predicted * std + mean
        mask = outputs["mask"][..., None]
        masked = original * (1.0 - mask) + 0.5 * mask
        pasted = original * (1.0 - mask) + ops.clip(predicted, 0.0, 1.0) * mask
        to_images = lambda p: ops.convert_to_numpy(unpatchify(p, patch, channels))
        return {"masked": to_images(masked), "reconstruction": to_images(pasted), "original": to_images(original)}

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "decoder_heads": self.decoder_heads,
            "mask_ratio": self.mask_ratio,
            "norm_pix_loss": self.norm_pix_loss,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)

