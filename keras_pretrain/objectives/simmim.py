"""SimMIM (Xie et al. 2022) as a `keras.Model` you `fit` on unlabeled images."""

import keras
from keras import ops

from keras_pretrain.distribute import replica_uniform
from keras_pretrain.models.flat_projections import flat_projections
from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.models.vit import ChecksImages, patchify
from keras_pretrain.objectives.masking import block_mask, num_masked
from keras_pretrain.objectives.xla import CompilesWithXla
from keras_pretrain.throughput import count_parameters, transformer_flops


@keras.saving.register_keras_serializable(package="keras_pretrain")
class SimMIM(CompilesWithXla, TracesOnce, ChecksImages, keras.Model):
    """Masked image modeling with mask tokens in the encoder input, around a `ViTEncoder`.

    Every step, each image loses `mask_ratio` of its patches in square blocks
    of `mask_block` x `mask_block` patches (SimMIM masks coarse cells). Unlike
    MAE, the encoder sees every position: a masked patch's embedding is
    replaced by a learned mask token before the position embedding. One linear
    layer predicts each patch's pixels (in `[0, 1]`) from the encoder's
    output; the loss is the mean absolute error over the pixels of masked
    patches only.

    `call` returns `{"pixels": (batch, num_patches, patch_pixels), "mask":
    (batch, num_patches)}`, mask 1 where a patch was masked. Pass `noise`
    (uniform, `(batch, blocks)`, one value per block) to fix the masks.

    Example:
    >>> simmim = SimMIM(ViTEncoder(image_size=32, channels=3, patch_size=4), mask_ratio=0.6, mask_block=2)
    >>> simmim.compile(optimizer="adamw")
    >>> simmim.fit(images_uint8, batch_size=128, epochs=1)  # no labels
    """

    def __init__(self, encoder, mask_ratio=0.6, mask_block=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.mask_block = mask_block
        self.seed = seed
        if encoder.grid_size % mask_block:
            raise ValueError(
                f"mask_block {mask_block} does not divide the {encoder.grid_size} x {encoder.grid_size} patch grid: "
                f"choose one of {[b for b in range(1, encoder.grid_size + 1) if encoder.grid_size % b == 0]}."
            )
        self.num_blocks = (encoder.grid_size // mask_block) ** 2
        self.num_masked_blocks = num_masked(self.num_blocks, mask_ratio)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.mask_token = self.add_weight(
            name="mask_token", shape=(1, 1, encoder.hidden_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.pixel_head = keras.layers.Dense(encoder.patch_size**2 * encoder.channels, name="pixel_head")
        self.pixel_loss = keras.losses.MeanAbsoluteError(reduction="mean_with_sample_weight")

    @property
    def pretrained_encoder(self):
        """The encoder to fine-tune or probe."""
        return self.encoder

    def flops_per_sample(self):
        """Training FLOPs per image: the encoder and the pixel head on every patch."""
        encoder, patches = self.encoder, self.encoder.num_patches
        body = transformer_flops(count_parameters(*encoder.blocks, encoder.final_norm), patches, encoder.depth,
                                 encoder.hidden_dim)
        return 6 * count_parameters(encoder.patch_projection, self.pixel_head) * patches + body

    def build(self, input_shape):
        if not self.encoder.built:
            self.encoder.build(input_shape)
        self.pixel_head.build((input_shape[0], self.encoder.num_patches, self.encoder.hidden_dim))
        self.built = True

    @flat_projections()
    def call(self, images, noise=None, training=False):
        encoder = self.encoder
        patches = patchify(encoder.pixels(images), encoder.patch_size)
        tokens = encoder.patch_projection(patches)
        if noise is None:
            noise = replica_uniform((ops.shape(tokens)[0], self.num_blocks), seed=self.seed_generator)
        mask = block_mask(noise, encoder.grid_size, self.mask_block, self.num_masked_blocks)
        masked = ops.cast(mask, tokens.dtype)[..., None]
        tokens = tokens * (1.0 - masked) + ops.cast(self.mask_token, tokens.dtype) * masked
        latent = encoder.transform(encoder.position_embedding(tokens), training=training)
        return {"pixels": self.pixel_head(latent), "mask": mask}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = patchify(self.encoder.pixels(x), self.encoder.patch_size)
        # Mean absolute error per patch, averaged over masked patches (all patches have as many pixels).
        return self.pixel_loss(ops.cast(target, "float32"), ops.cast(y_pred["pixels"], "float32"),
                               sample_weight=y_pred["mask"])

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "mask_ratio": self.mask_ratio,
            "mask_block": self.mask_block,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
