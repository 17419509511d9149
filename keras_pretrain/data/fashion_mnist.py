"""Fashion-MNIST from whatever copy this machine has, as uint8 numpy arrays."""

import gzip
import os
from pathlib import Path

import numpy as np

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataNotFoundError(FileNotFoundError):
    """No usable copy of a data set: the message lists what was tried and how to fix it.

    Example:
    >>> try:
    ...     data = load_fashion_mnist(download=False)
    ... except DataNotFoundError as error:
    ...     print(error)  # every place tried, and how to get the files
    """


def read_idx(path):
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array.

    Example:
    >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    >>> images.shape, images.dtype
    ((10000, 28, 28), dtype('uint8'))
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header names {ndim} sizes, the file ends before them.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} values.")
    return array.reshape(shape)


def keras_cache_dir():
    """Where `keras.datasets.fashion_mnist` keeps its files."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "fashion-mnist"


def _load_dir(directory):
    arrays = {}
    for split, (images_file, labels_file) in FILES.items():
        images = read_idx(Path(directory) / images_file)
        labels = read_idx(Path(directory) / labels_file)
        if len(images) != len(labels):
            raise ValueError(f"{directory}: {len(images)} {split} images but {len(labels)} labels.")
        arrays[split] = (images[..., None], labels.astype("int64"))
    return arrays


def load_fashion_mnist(data_dir=None, download=True):
    """Fashion-MNIST as `{"train": (images, labels), "test": (images, labels)}`.

    Images are uint8 `(n, 28, 28, 1)`, labels int64. With `data_dir`, only that
    directory is used (it must hold the four IDX `.gz` files). Otherwise this
    looks in the Debian package's directory, then the Keras cache, then (if
    `download`) lets `keras.datasets` download. Raises `DataNotFoundError`
    listing every place tried.

    Example:
    >>> data = load_fashion_mnist()
    >>> images, labels = data["train"]
    >>> images.shape, images.dtype
    ((60000, 28, 28, 1), dtype('uint8'))
    """
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise DataNotFoundError(f"Fashion-MNIST directory {data_dir} does not exist: pass the directory that holds "
                                    "its four IDX files (--data-dir), or leave it out to look in the usual places.")
        try:
            return _load_dir(data_dir)
        except (OSError, ValueError) as error:
            raise DataNotFoundError(
                f"Could not read Fashion-MNIST from {data_dir}: {error}. The directory must hold "
                f"{', '.join(sum(FILES.values(), ()))}."
            ) from error
    tried = []
    for directory in (DEBIAN_DIR, keras_cache_dir()):
        try:
            return _load_dir(directory)
        except (OSError, ValueError) as error:
            tried.append(f"{directory}: {error}")
    if download:
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
            return {
                "train": (x_train[..., None], y_train.astype("int64")),
                "test": (x_test[..., None], y_test.astype("int64")),
            }
        except Exception as error:  # keras raises several kinds of network errors
            tried.append(f"keras.datasets.fashion_mnist download: {error}")
    else:
        tried.append("download: disabled")
    raise DataNotFoundError(
        "Fashion-MNIST not found. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nFix: `apt-get install dataset-fashion-mnist` (Debian), or put the four IDX .gz files in "
        f"{keras_cache_dir()} or a directory you pass as data_dir / --data-dir, or allow the download."
    )
