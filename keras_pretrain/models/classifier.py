"""Image classifier on a (pre-trained) encoder: pooled tokens, then a linear head."""

import keras
from keras import ops

from keras_pretrain.models.tracing import TracesOnce
from keras_pretrain.models.vit import ChecksImages


@keras.saving.register_keras_serializable(package="keras_pretrain")
class ImageClassifier(TracesOnce, ChecksImages, keras.Model):
    """Pools an encoder's tokens, normalises them and maps them to class logits.

    `pooling="mean"` is MAE's fine-tuning head (global average pooling and a
    norm before the linear layer); `pooling="flatten"` normalises each patch's
    token and keeps them all, in order, so the head sees where each feature is
    (worth it on small patch grids). Set `encoder.trainable = False` first for
    a linear probe. `class_names` travel with the model so that exports can
    return them.

    Example:
    >>> classifier = ImageClassifier(mae.encoder, num_classes=10)
    >>> classifier.compile(optimizer=make_adamw(classifier, 1e-3, total_steps=500),
    ...                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...                    metrics=["accuracy"])
    >>> classifier.fit(images, labels, epochs=50)
    >>> ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=64), 10, pooling="flatten").embedding_dim  # 16 patches
    1024
    """

    POOLINGS = ("mean", "flatten")

    def __init__(self, encoder, num_classes, dropout=0.0, class_names=None, head=None, pooling="mean", **kwargs):
        super().__init__(**kwargs)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class_names for {num_classes} classes.")
        if pooling not in self.POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}: choose one of {', '.join(self.POOLINGS)}.")
        self.pooling = pooling
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout
        self.class_names = list(class_names) if class_names is not None else None
        self.head_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="head_norm")
        self.head_dropout = keras.layers.Dropout(dropout)
        # A Dense layer by default; any layer from embeddings to class logits (a `KnnHead`) otherwise.
        self.head = head if head is not None else keras.layers.Dense(num_classes, name="head")

    def build(self, input_shape):
        if not self.encoder.built:  # a deserialized or pre-trained encoder comes built
            self.encoder.build(input_shape)
        self.head_norm.build((input_shape[0], self.encoder.hidden_dim))
        self.head.build((input_shape[0], self.embedding_dim))
        self.built = True

    @property
    def embedding_dim(self):
        """The width of `embed`'s output: the hidden size, times the number of patches when flattened."""
        return self.encoder.hidden_dim * (self.encoder.num_patches if self.pooling == "flatten" else 1)

    def embed(self, images, training=False):
        """Pooled, normalised embeddings `(batch, embedding_dim)`: the input of the head."""
        tokens = self.encoder(images, training=training)
        if self.pooling == "flatten":
            return ops.reshape(self.head_norm(tokens), (-1, self.embedding_dim))
        return self.head_norm(ops.mean(tokens, axis=1))

    def call(self, images, training=False):
        return self.head(self.head_dropout(self.embed(images, training=training), training=training))

    def layer_id(self, variable_path):
        """Depth of a variable for layer-wise learning-rate decay: the head is last."""
        if variable_path.startswith(("head", "head_norm")) or "/head" in variable_path:
            return self.encoder.depth + 1
        return self.encoder.layer_id(variable_path)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "class_names": self.class_names,
            "pooling": self.pooling,
            "head": None if isinstance(self.head, keras.layers.Dense) else keras.saving.serialize_keras_object(self.head),
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["head"] = keras.saving.deserialize_keras_object(config.get("head"))
        return cls(**config)
