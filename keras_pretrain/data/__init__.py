"""Data sources and pipelines."""

from keras_pretrain.data.fashion_mnist import DataNotFoundError, load_fashion_mnist, read_idx
from keras_pretrain.data.splits import few_label_split

__all__ = ["DataNotFoundError", "few_label_split", "load_fashion_mnist", "read_idx"]
