"""keras-pretrain: self-supervised pre-training for Keras 3 on TensorFlow, JAX and PyTorch.

Submodules load on first use, so that `keras_pretrain.cli` can choose the
backend before anything imports keras.

>>> import keras_pretrain
>>> keras_pretrain.objectives.MaskedAutoencoder
"""

import importlib

from keras_pretrain.allocator import keep_freed_memory

__version__ = "0.1.0"

# Before any framework starts the threads its steps allocate from (see keras_pretrain.allocator).
keep_freed_memory()

_SUBMODULES = ("config", "data", "distribute", "evaluation", "export", "models", "objectives", "optimizers", "pipelines", "recipes")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_pretrain.{name}")
    raise AttributeError(f"module 'keras_pretrain' has no attribute {name!r}")
