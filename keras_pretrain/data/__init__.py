"""Data sources: images (folders, arrays, TFDS, Fashion-MNIST), text corpora, labelled text, WordNet; few-label splits."""

from keras_pretrain.data.fashion_mnist import (
    DataNotFoundError,
    load_fashion_mnist,
    read_idx,
)
from keras_pretrain.data.images import (
    ArrayImages,
    ImageDataError,
    ImageFolder,
    ImageSource,
    TfdsImages,
    fashion_mnist_images,
    image_source,
)
from keras_pretrain.data.labelled_text import LabelledTextSource, labelled_text_source
from keras_pretrain.data.splits import few_label_split, split_labelled
from keras_pretrain.data.text import (
    CorpusError,
    TextCorpus,
    bucketed_dataset,
    packed_dataset,
    text_corpus,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)
from keras_pretrain.data.wordnet import (
    find_wordnet,
    gloss_corpus,
    load_noun_glosses,
    noun_gloss_source,
)

__all__ = [
    "ArrayImages",
    "CorpusError",
    "DataNotFoundError",
    "ImageDataError",
    "ImageFolder",
    "ImageSource",
    "LabelledTextSource",
    "TfdsImages",
    "TextCorpus",
    "bucketed_dataset",
    "fashion_mnist_images",
    "few_label_split",
    "find_wordnet",
    "gloss_corpus",
    "image_source",
    "labelled_text_source",
    "load_fashion_mnist",
    "load_noun_glosses",
    "noun_gloss_source",
    "packed_dataset",
    "read_idx",
    "split_labelled",
    "text_corpus",
    "train_word_piece_tokenizer",
    "train_word_piece_vocabulary",
]
