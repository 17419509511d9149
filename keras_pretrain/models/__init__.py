"""Encoders and heads."""

from keras_pretrain.models.classifier import ImageClassifier
from keras_pretrain.models.text_classifier import TextClassifier
from keras_pretrain.models.vit import PositionEmbedding, ViTEncoder, patchify, unpatchify

__all__ = ["ImageClassifier", "PositionEmbedding", "TextClassifier", "ViTEncoder", "patchify", "unpatchify"]
