"""Pre-training objectives, one per file; each is a `keras.Model` you `fit`."""

from keras_pretrain.objectives.masked_autoencoder import MaskedAutoencoder

__all__ = ["MaskedAutoencoder"]
