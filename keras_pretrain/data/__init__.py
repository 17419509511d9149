"""Data sources and pipelines: images (Fashion-MNIST), few-label splits, text corpora, WordNet glosses."""

from keras_pretrain.data.fashion_mnist import DataNotFoundError, load_fashion_mnist, read_idx
from keras_pretrain.data.splits import few_label_split
from keras_pretrain.data.text import (
    CorpusError,
    TextCorpus,
    bucketed_dataset,
    packed_dataset,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)
from keras_pretrain.data.wordnet import find_wordnet, gloss_corpus, load_noun_glosses

__all__ = [
    "CorpusError",
    "DataNotFoundError",
    "TextCorpus",
    "bucketed_dataset",
    "few_label_split",
    "find_wordnet",
    "gloss_corpus",
    "load_fashion_mnist",
    "load_noun_glosses",
    "packed_dataset",
    "read_idx",
    "train_word_piece_tokenizer",
    "train_word_piece_vocabulary",
]
