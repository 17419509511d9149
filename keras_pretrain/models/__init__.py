"""Encoders and heads."""

from keras_pretrain.models.classifier import ImageClassifier
from keras_pretrain.models.vit import PositionEmbedding, ViTEncoder, patchify, unpatchify

__all__ = ["ImageClassifier", "PositionEmbedding", "ViTEncoder", "patchify", "unpatchify"]
