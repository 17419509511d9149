"""Data sources and pipelines."""

from keras_pretrain.data.fashion_mnist import DataNotFoundError, load_fashion_mnist, read_idx
from keras_pretrain.data.splits import few_label_split

__all__ = ["DataNotFoundError", "few_label_split", "load_fashion_mnist", "read_idx"]

# Text corpora, WordPiece vocabularies and packed pipelines for masked language modeling.
from keras_pretrain.data.text import (  # noqa: E402
    CorpusError,
    TextCorpus,
    packed_dataset,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)

__all__ += [
    "CorpusError",
    "TextCorpus",
    "packed_dataset",
    "train_word_piece_tokenizer",
    "train_word_piece_vocabulary",
]
