"""Pre-training objectives, one per file; each is a `keras.Model` you `fit`."""

from keras_pretrain.objectives.latent_prediction import LatentMaskedPrediction
from keras_pretrain.objectives.masked_autoencoder import MaskedAutoencoder
from keras_pretrain.objectives.masked_language_model import MaskedLanguageModel
from keras_pretrain.objectives.simmim import SimMIM

__all__ = ["LatentMaskedPrediction", "MaskedAutoencoder", "MaskedLanguageModel", "SimMIM"]
