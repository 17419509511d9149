"""TensorFlow Datasets: the `tfds:NAME[:SPLIT]` spec, and loading with one clear error when a set is not there."""

import re

from keras_pretrain.config import suggest
from keras_pretrain.data.fashion_mnist import DataNotFoundError

# A name (with an optional config and version, e.g. imdb_reviews/plain_text:1.0.0), then an optional split.
TFDS_SPEC = re.compile(r"tfds:(?P<name>[^:]+(?::\d+\.\d+\.\d+)?)(?::(?P<split>.+))?")


def parse_tfds_spec(spec):
    """`(name, split)` from `"tfds:NAME"` (split `"train"`) or `"tfds:NAME:SPLIT"`; `None` if `spec` is no TFDS spec.

    Example:
    >>> parse_tfds_spec("tfds:imdb_reviews:test[:10%]"), parse_tfds_spec("books/")
    (('imdb_reviews', 'test[:10%]'), None)
    """
    if not isinstance(spec, str) or not spec.startswith("tfds:"):
        return None
    match = TFDS_SPEC.fullmatch(spec)
    if not match:
        raise ValueError(f"{spec!r} is not 'tfds:NAME' or 'tfds:NAME:SPLIT' (e.g. tfds:imdb_reviews:test).")
    return match["name"], match["split"] or "train"


def load_tfds(name, split, data_dir=None, download=False, instead="local files", **options):
    """`tfds.load(name, split=split, ...)`, or a `DataNotFoundError` saying how to get the data set.

    `instead` names the local alternative the error suggests; `options` go
    to `tfds.load` (`with_info`, `decoders`, `shuffle_files`, ...).

    Example:
    >>> dataset, info = load_tfds("cifar10", "test", with_info=True, instead="an image folder")
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError("TFDS data sets need `pip install tensorflow-datasets`.") from error
    try:
        return tfds.load(name, split=split, data_dir=data_dir, download=download, **options)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataNotFoundError(f"TFDS has no data set {name!r}{suggest(name.split('/')[0], tfds.list_builders())} "
                                f"(tfds.list_builders() lists them all), or use {instead}.") from None
    except Exception as error:  # TFDS raises AssertionError, network errors...
        reason = " ".join(str(error).split())[:300]  # TFDS's messages run over several lines
        raise DataNotFoundError(
            f"TFDS data set {name!r} (split {split!r}) could not be loaded "
            f"{'' if download else 'offline '}from {data_dir or 'the default TFDS directory'}: "
            f"{type(error).__name__}: {reason}. Fix: prepare it once with network access "
            f"(`tfds build {name}`, or tfds.load(..., download=True)) and pass its data_dir, or use {instead}."
        ) from error
