"""Data sources and pipelines: images (Fashion-MNIST), few-label splits, text corpora."""

from keras_pretrain.data.fashion_mnist import DataNotFoundError, load_fashion_mnist, read_idx
from keras_pretrain.data.splits import few_label_split
from keras_pretrain.data.text import (
    CorpusError,
    TextCorpus,
    packed_dataset,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)

__all__ = [
    "CorpusError",
    "DataNotFoundError",
    "TextCorpus",
    "few_label_split",
    "load_fashion_mnist",
    "packed_dataset",
    "read_idx",
    "train_word_piece_tokenizer",
    "train_word_piece_vocabulary",
]
