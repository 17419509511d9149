"""Latent masked prediction (the data2vec 2.0 / I-JEPA family) as a `keras.Model` you `fit` on unlabeled images."""

import keras
from keras import ops

from keras_pretrain.distribute import replica_uniform
from keras_pretrain.models.flat_projections import flat_projections
from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.models.vit import ChecksImages, PositionEmbedding, run_blocks, transformer_blocks
from keras_pretrain.objectives.masking import block_mask, gather_tokens, num_masked, random_mask, visible_first
from keras_pretrain.objectives.xla import CompilesWithXla
from keras_pretrain.throughput import count_parameters, transformer_flops


@keras.saving.register_keras_serializable(package="keras_pretrain")
class LatentMaskedPrediction(CompilesWithXla, TracesOnce, ChecksImages, keras.Model):
    """Predict a momentum teacher's features of masked patches from the visible ones.

    The student (`encoder`) sees only the visible patches, as in MAE; a light
    predictor (transformer blocks, as MAE's decoder) gets the student's
    features plus a learned mask token at every masked position and predicts,
    at each masked position, what the teacher computes there from the whole
    image. The teacher is a copy of the encoder whose weights follow the
    student's as an exponential moving average, updated in every training step
    (momentum rising linearly from `momentum` to `final_momentum` over
    `momentum_steps` updates). Its target, as in data2vec, is the average of its
    last `target_layers` block outputs, each layer-normalised, normalised
    again. The loss is the mean squared error over masked patches only. Masks
    are random (`mask_block=1`) or in square blocks of patches.

    Downstream, use `pretrained_encoder`: the teacher, as I-JEPA evaluates it.

    `call` returns `{"predictions": (batch, num_patches, hidden_dim),
    "targets": the same shape, "mask": (batch, num_patches)}`. Pass `noise`
    (uniform, `(batch, blocks)`) to fix the masks.

    Example:
    >>> model = LatentMaskedPrediction(ViTEncoder(image_size=28, channels=1, patch_size=7), momentum_steps=3000)
    >>> model.compile(optimizer="adamw")
    >>> model.fit(images_uint8, batch_size=256, epochs=10)   # no labels
    >>> features = model.pretrained_encoder(images_uint8[:8])
    """

    def __init__(
        self,
        encoder,
        predictor_dim=64,
        predictor_depth=1,
        predictor_heads=2,
        mask_ratio=0.75,
        mask_block=1,
        target_layers=2,
        momentum=0.996,
        final_momentum=1.0,
        momentum_steps=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if encoder.grid_size % mask_block:
            raise ValueError(f"mask_block {mask_block} does not divide the {encoder.grid_size}-patch grid side.")
        if not 1 <= target_layers <= encoder.depth:
            raise ValueError(f"target_layers must be between 1 and the encoder's depth {encoder.depth}; got {target_layers}.")
        if not 0.0 <= momentum <= final_momentum <= 1.0:
            raise ValueError(f"Need 0 <= momentum <= final_momentum <= 1; got {momentum} and {final_momentum}.")
        self.encoder = encoder
        self.predictor_dim = predictor_dim
        self.predictor_depth = predictor_depth
        self.predictor_heads = predictor_heads
        self.mask_ratio = mask_ratio
        self.mask_block = mask_block
        self.target_layers = target_layers
        self.momentum = momentum
        self.final_momentum = final_momentum
        self.momentum_steps = momentum_steps
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.num_blocks = (encoder.grid_size // mask_block) ** 2
        self.num_masked_blocks = num_masked(self.num_blocks, mask_ratio)
        self.num_visible = encoder.num_patches - self.num_masked_blocks * mask_block**2

        # The teacher starts as a copy of the student, built now (eagerly), so the copy is never lost.
        if not encoder.built:
            encoder.build((None, encoder.image_size, encoder.image_size, encoder.channels))
        self.teacher = encoder.copy(name="teacher")
        self.teacher.trainable = False
        self.teacher_updates = self.add_weight(name="teacher_updates", shape=(), initializer="zeros", trainable=False)

        self.predictor_embed = keras.layers.Dense(predictor_dim, name="predictor_embed")
        self.mask_token = self.add_weight(
            name="mask_token", shape=(1, 1, predictor_dim), initializer=keras.initializers.RandomNormal(stddev=0.02)
        )
        self.predictor_position = PositionEmbedding(encoder.grid_size, name="predictor_position")
        self.predictor_blocks = transformer_blocks(predictor_depth, predictor_dim, predictor_heads, 4, "predictor_block")
        self.predictor_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="predictor_norm")
        self.predictor_out = keras.layers.Dense(encoder.hidden_dim, name="predictor_out")
        self.feature_loss = keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")

    @property
    def pretrained_encoder(self):
        """The encoder to fine-tune or probe: the momentum teacher."""
        return self.teacher

    def flops_per_sample(self):
        """Training FLOPs per image: the student on visible patches, the predictor on all, the teacher's forward pass."""
        encoder, patches = self.encoder, self.encoder.num_patches
        blocks = count_parameters(*encoder.blocks, encoder.final_norm)
        student = transformer_flops(blocks, self.num_visible, encoder.depth, encoder.hidden_dim)
        predictor = transformer_flops(count_parameters(*self.predictor_blocks, self.predictor_norm, self.predictor_out),
                                      patches, self.predictor_depth, self.predictor_dim)
        teacher = transformer_flops(blocks, patches, encoder.depth, encoder.hidden_dim) / 3  # forward only
        stem = count_parameters(encoder.patch_projection) * (6 * self.num_visible + 2 * patches)  # + teacher's forward
        return stem + student + 6 * count_parameters(self.predictor_embed) * self.num_visible + predictor + teacher

    def build(self, input_shape):
        batch, num_patches = input_shape[0], self.encoder.num_patches
        self.predictor_embed.build((batch, num_patches, self.encoder.hidden_dim))
        shape = (batch, num_patches, self.predictor_dim)
        for layer in [self.predictor_position, *self.predictor_blocks, self.predictor_norm]:
            layer.build(shape)
        self.predictor_out.build(shape)
        self.built = True

    def targets(self, images):
        """The teacher's features of every patch: its last `target_layers` block outputs, normalised and averaged."""
        states = self.teacher.hidden_states(self.teacher.embed_patches(images))[-self.target_layers :]
        average = sum(_normalize(state) for state in states) / len(states)
        return ops.stop_gradient(_normalize(average))

    def update_teacher(self):
        """One step of the moving average: teacher <- m * teacher + (1 - m) * student."""
        steps = self.momentum_steps or 1
        progress = ops.minimum(ops.cast(self.teacher_updates, "float32") / steps, 1.0)
        m = self.momentum + (self.final_momentum - self.momentum) * progress
        for teacher, student in zip(self.teacher.weights, self.encoder.weights):
            value = ops.stop_gradient(ops.cast(student, "float32"))
            teacher.assign(ops.cast(m * ops.cast(teacher, "float32") + (1.0 - m) * value, teacher.dtype))
        self.teacher_updates.assign(self.teacher_updates + 1.0)

    @flat_projections()
    def call(self, images, noise=None, training=False):
        batch_size, num_patches = ops.shape(images)[0], self.encoder.num_patches
        if noise is None:
            noise = replica_uniform((batch_size, self.num_blocks), seed=self.seed_generator)
        if self.mask_block == 1:
            mask = random_mask(noise, self.num_masked_blocks)
        else:
            mask = block_mask(noise, self.encoder.grid_size, self.mask_block, self.num_masked_blocks)
        order = visible_first(mask, ops.arange(num_patches, dtype="float32")[None] / num_patches)
        restore = ops.argsort(order, axis=1)
        keep = order[:, : self.num_visible]
        latent = self.encoder.transform(self.encoder.embed_patches(images, keep), training=training)

        x = self.predictor_embed(latent)
        mask_tokens = ops.broadcast_to(
            ops.cast(self.mask_token, x.dtype), (batch_size, num_patches - self.num_visible, self.predictor_dim)
        )
        x = gather_tokens(ops.concatenate([x, mask_tokens], axis=1), restore)
        x = self.predictor_position(x)
        x = run_blocks(self.predictor_blocks, x, training)
        predictions = self.predictor_out(self.predictor_norm(x))
        targets = self.targets(images)
        if training:
            self.update_teacher()
        return {"predictions": predictions, "targets": targets, "mask": mask}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.feature_loss(ops.cast(y_pred["targets"], "float32"), ops.cast(y_pred["predictions"], "float32"),
                                 sample_weight=y_pred["mask"])

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "predictor_dim": self.predictor_dim,
            "predictor_depth": self.predictor_depth,
            "predictor_heads": self.predictor_heads,
            "mask_ratio": self.mask_ratio,
            "mask_block": self.mask_block,
            "target_layers": self.target_layers,
            "momentum": self.momentum,
            "final_momentum": self.final_momentum,
            "momentum_steps": self.momentum_steps,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def _normalize(features):
    """Layer normalisation without scale or shift, over the feature axis."""
    features = ops.cast(features, "float32")
    mean = ops.mean(features, axis=-1, keepdims=True)
    return (features - mean) / ops.sqrt(ops.var(features, axis=-1, keepdims=True) + 1e-6)

