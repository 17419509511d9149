"""Pre-training objectives, one per file; each is a `keras.Model` you `fit`."""

from keras_pretrain.objectives.masked_autoencoder import MaskedAutoencoder
from keras_pretrain.objectives.masked_language_model import MaskedLanguageModel

__all__ = ["MaskedAutoencoder", "MaskedLanguageModel"]
