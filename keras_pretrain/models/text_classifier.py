"""Text classifier on a (pre-trained) keras-hub backbone: mean-pooled token features, then a linear head."""

import keras
from keras import ops

from keras_pretrain.models.text_backbone import sequence_output
from keras_pretrain.models.tracing import TracesOnce


@keras.saving.register_keras_serializable(package="keras_pretrain")
class TextClassifier(TracesOnce, keras.Model):
    """Averages a backbone's token features over the non-padding tokens, normalises them, maps them to class logits.

    Takes the dict a `keras_hub.models.BertBackbone` takes (`token_ids`,
    `padding_mask`, optional `segment_ids`). Mean pooling uses every token
    the backbone computed, which a lightly pre-trained backbone's `[CLS]`
    token does not summarise yet. Set `backbone.trainable = False` first for
    a linear probe.

    `preprocessor` (optional) turns raw strings into that dict: a keras-hub
    text-classifier preprocessor such as `BertTextClassifierPreprocessor`.
    It travels with the model (`get_config`, `.keras` files), so
    `classify_texts` and a string-in SavedModel export can use it;
    `fit` and `call` take token ids, as `MaskedLanguageModel` does.

    Example:
    >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=64)
    >>> classifier = TextClassifier(mlm.backbone, num_classes=8, class_names=names, preprocessor=preprocessor)
    >>> classifier.compile(optimizer=make_adamw(classifier, 1e-3, total_steps=500),
    ...                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...                    metrics=["accuracy"])
    >>> classifier.fit(preprocessor(train_texts), train_labels, epochs=30)
    >>> classifier.classify_texts(["a domesticated carnivorous mammal"])  # probabilities
    """

    def __init__(self, backbone, num_classes, dropout=0.0, class_names=None, preprocessor=None, head=None, **kwargs):
        super().__init__(**kwargs)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class_names for {num_classes} classes.")
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout
        self.class_names = list(class_names) if class_names is not None else None
        self.preprocessor = preprocessor
        self.head_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="head_norm")
        self.head_dropout = keras.layers.Dropout(dropout)
        # A Dense layer by default; any layer from embeddings to class logits (a `KnnHead`) otherwise.
        self.head = head if head is not None else keras.layers.Dense(num_classes, name="head")

    def build(self, input_shape):
        self.head_norm.build((None, self.backbone.hidden_dim))
        self.head.build((None, self.backbone.hidden_dim))
        self.built = True

    def embed(self, inputs, training=False):
        """Pooled, normalised embeddings `(batch, hidden_dim)`: the input of the head."""
        padding_mask = inputs["padding_mask"]
        hidden = sequence_output(self.backbone, inputs["token_ids"], padding_mask, inputs.get("segment_ids"), training)
        weights = ops.cast(padding_mask, hidden.dtype)[..., None]
        pooled = ops.sum(hidden * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        return self.head_norm(pooled)

    def call(self, inputs, training=False):
        return self.head(self.head_dropout(self.embed(inputs, training=training), training=training))

    def preprocess(self, texts):
        """Raw strings -> the token-id dict `call` takes, with the model's preprocessor."""
        if self.preprocessor is None:
            raise ValueError("This TextClassifier has no preprocessor: pass one to the constructor to take raw strings.")
        return self.preprocessor(texts)

    def classify_texts(self, texts, batch_size=256):
        """Class probabilities `(len(texts), num_classes)` for raw strings, as a numpy array."""
        logits = self.predict(self.preprocess(texts), batch_size=batch_size, verbose=0)
        return ops.convert_to_numpy(ops.softmax(logits, axis=-1))

    def layer_id(self, variable_path):
        """Depth of a variable for layer-wise learning-rate decay: embeddings 0, block i at i + 1, the head last."""
        if variable_path.startswith(("head", "head_norm")) or "/head" in variable_path:
            return self.backbone.num_layers + 1
        for i in range(self.backbone.num_layers):
            if f"transformer_layer_{i}/" in variable_path:
                return i + 1
        return 0

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "class_names": self.class_names,
            "head": None if isinstance(self.head, keras.layers.Dense) else keras.saving.serialize_keras_object(self.head),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config):
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        config["head"] = keras.saving.deserialize_keras_object(config.get("head"))
        return cls(**config)
