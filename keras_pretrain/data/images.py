"""Image data sources streamed through `tf.data`: folders of image files, numpy arrays, TFDS and Fashion-MNIST.

An `ImageSource` is a set of images, labelled or not, read lazily: folders and
TFDS data sets are decoded image by image as a pipeline pulls them, so data
sets larger than memory work; only `ArrayImages` holds its (given) arrays.
Every source converts its images with the same function, `convert_image`, to
uint8 `(image_size, image_size, channels)`, so a model sees the same pixels
whichever way its data came in.

Example:
>>> source = image_source("photos/")  # one subfolder per class
>>> source.description
'image folder photos (2 classes, 1,234 images)'
>>> source.check()["channels"]
3
>>> data = source.dataset(64, 3, shuffle_seed=0).batch(32)
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_pretrain.data.fashion_mnist import (
    CLASS_NAMES,
    load_fashion_mnist,
)
from keras_pretrain.data.tfds import load_tfds, parse_tfds_spec

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Images per gather/convert step for arrays and per numpy batch in `load`: large enough to
# amortise the per-step cost of tf.data, small enough to keep the working set tiny.
BATCH = 256
# A TFDS split has no random access: shuffling happens in a buffer of this many encoded images.
TFDS_SHUFFLE_BUFFER = 10_000


class ImageDataError(ValueError):
    """Images that cannot be used; the message is one line naming the problem and the fix.

    Example:
    >>> ImageFolder("no/such/folder")
    Traceback (most recent call last):
    ImageDataError: Image folder no/such/folder does not exist: check the path.
    """


def convert_image(image, image_size, channels):
    """Convert an image (or a batch) to uint8 `(..., image_size, image_size, channels)`.

    The one conversion every source uses. `image` is encoded bytes (a scalar
    string tensor: PNG, JPEG, BMP or GIF, decoded with
    `tf.io.decode_image(..., expand_animations=False)`, so a GIF gives its
    first frame) or a decoded `(h, w, c)` / `(n, h, w, c)` tensor with c in
    1-4. An alpha channel is dropped; grey becomes RGB by repeating its
    channel and RGB becomes grey with `tf.image.rgb_to_grayscale`; the image
    is squashed to `image_size` x `image_size` with an antialiased resize
    (as Keras's `image_dataset_from_directory` does by default) unless it
    already has that size; values are rounded and clipped to uint8.

    Example:
    >>> image = convert_image(tf.io.read_file("cat.png"), 32, 3)
    >>> image.shape, image.dtype
    (TensorShape([32, 32, 3]), tf.uint8)
    """
    image_size, channels = _check_target(image_size, channels)
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, expand_animations=False)
    if image.shape.rank is not None and image.shape.rank < 3:
        raise ValueError(f"convert_image takes (h, w, c) or (n, h, w, c) images; got shape {image.shape}.")
    target = image.shape[:-3] + (image_size, image_size, channels)
    if image.dtype == tf.uint8 and image.shape.rank and image.shape[-3:].as_list() == list(target[-3:]):
        return image  # already as asked: nothing to do
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32)
    else:  # uint16 PNGs or float features: rescale from their dtype's range to 0-255
        image = tf.image.convert_image_dtype(image, tf.float32) * 255.0
    if image.shape[-1] is not None:  # arrays, TFDS tensors: the channel count is known now
        colour = 3 if image.shape[-1] >= 3 else 1
        image = image[..., :colour]  # drops alpha: grey+alpha -> grey, RGBA -> RGB
        if channels == 3 and colour == 1:
            image = tf.repeat(image, 3, axis=-1)
        elif channels == 1 and colour == 3:
            image = tf.image.rgb_to_grayscale(image)
    else:  # decoded files: known only at run time, hence tensors rather than Python ifs
        colour = tf.where(tf.shape(image)[-1] >= 3, 3, 1)
        image = image[..., :colour]
        if channels == 3:
            image = tf.repeat(image, 3 // colour, axis=-1)
        else:
            image = tf.cond(
                colour == 3,
                lambda: tf.image.rgb_to_grayscale(tf.ensure_shape(image, image.shape[:-1] + (3,))),
                lambda: image,
            )
    resize = lambda: tf.image.resize(image, (image_size, image_size), antialias=True)  # noqa: E731
    if image.shape[-3:-1].is_fully_defined():
        image = image if image.shape[-3:-1].as_list() == [image_size, image_size] else resize()
    else:
        image = tf.cond(tf.reduce_all(tf.shape(image)[-3:-1] == [image_size, image_size]), lambda: image, resize)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(image, target)


def _check_target(image_size, channels):
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer; got {image_size!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}.")
    return int(image_size), int(channels)


def _decoded_shape(image):
    """(height, width, channels) of encoded bytes or a decoded tensor, as an int32 vector."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, expand_animations=False)
    return tf.shape(image)


def _counts(class_names, images):
    """"2 classes, 1,234 images" or "1,234 images, unlabeled": the tail of every description."""
    if class_names is None:
        return f"{images}, unlabeled"
    return f"{_plural(len(class_names), 'class')}, {images}"


def _plural(count, noun):
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}{'es' if noun.endswith('s') else 's'}"


def _shuffled(dataset, seed, buffer_size):
    # A new order on every pass (epoch), and the same sequence of orders for the same seed.
    return dataset.shuffle(max(1, buffer_size), seed=int(seed), reshuffle_each_iteration=True)


class ImageSource:
    """Base class: a set of images, labelled or not, read lazily.

    Subclasses set `description` and `class_names` (None when unlabeled) and
    implement `__len__`, `_labels`, and `_item` / `_open` (index -> path ->
    encoded bytes, as tensor functions) or their own `dataset`; the
    conversion, `check` and `load` are shared.

    Example:
    >>> source = ImageFolder("pets/")
    >>> len(source), source.class_names
    (1234, ['cat', 'dog'])
    >>> images = source.load(32, 3, indices=[0, 5, 7])  # uint8 (3, 32, 32, 3)
    """

    description = "images"
    class_names = None

    def __len__(self):
        raise NotImplementedError

    @property
    def labelled(self):
        """Whether the images have labels (`class_names` is not None).

        Example:
        >>> ImageFolder("pets/").labelled  # one subfolder per class
        True
        """
        return self.class_names is not None

    def labels(self):
        """The labels: int64 `(n,)`, indices into `class_names`; `ImageDataError` if unlabeled.

        Example:
        >>> ImageFolder("pets/").labels()[:3]
        array([0, 0, 1])
        """
        if not self.labelled:
            raise ImageDataError(
                f"{self.description} has no labels: use it unlabeled (pre-training only), or give it labels "
                "(one subfolder per class, or labels= for arrays)."
            )
        return self._labels()

    def check(self):
        """Decode every image once; return `{"count", "channels", "min_size", "max_size"}`.

        Raises `ImageDataError` naming the first image that cannot be decoded.
        `channels` is 1 if every image is grey (one channel, alpha aside),
        else 3; `min_size` and `max_size` are `(height, width)`, each the
        smallest (largest) over all images, taken separately.

        Example:
        >>> ImageFolder("pets/").check()
        {'count': 1234, 'channels': 3, 'min_size': (120, 96), 'max_size': (500, 500)}
        """
        count = len(self)
        # Read and decode in the map that carries the index, so an error drops the pair together.
        pairs = self._indexed_items().map(
            lambda index, item: (index, _decoded_shape(self._open(item))), num_parallel_calls=tf.data.AUTOTUNE
        )
        # An image that fails to decode is dropped; the indices that come through tell which.
        seen = np.zeros(count, bool)
        grey, low, high = True, np.full(2, np.iinfo(np.int64).max), np.zeros(2, np.int64)
        for indices, shapes in pairs.ignore_errors().batch(1024).as_numpy_iterator():
            seen[indices] = True
            grey = grey and bool((shapes[:, 2] < 3).all())
            low = np.minimum(low, shapes[:, :2].min(axis=0))
            high = np.maximum(high, shapes[:, :2].max(axis=0))
        bad = np.flatnonzero(~seen)
        if len(bad):
            more = f" (and {len(bad) - 1:,} more)" if len(bad) > 1 else ""
            raise ImageDataError(
                f"{self._name(int(bad[0]))} cannot be decoded as an image{more}: remove or replace it."
            )
        if not count:
            raise ImageDataError(f"{self.description} holds no images: point at a source that has some.")
        return {
            "count": count,
            "channels": 1 if grey else 3,
            "min_size": (int(low[0]), int(low[1])),
            "max_size": (int(high[0]), int(high[1])),
        }

    def dataset(self, image_size, channels, indices=None, shuffle_seed=None):
        """Unbatched uint8 `(image_size, image_size, channels)` images as a `tf.data.Dataset`.

        In the order of `indices` (default: all, in order). With
        `shuffle_seed`, the order is shuffled anew on every pass, the same
        sequence of orders for the same seed (and TensorFlow's global seed,
        which `keras.utils.set_random_seed` sets, if one is set).

        Example:
        >>> data = ImageFolder("pets/").dataset(64, 3, shuffle_seed=0)
        >>> data.element_spec
        TensorSpec(shape=(64, 64, 3), dtype=tf.uint8, name=None)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        # Shuffle indices, not images: the buffer holds integers, and only what is read is decoded.
        ordered = tf.data.Dataset.from_tensor_slices(indices)
        if shuffle_seed is not None:
            ordered = _shuffled(ordered, shuffle_seed, len(indices))
        return ordered.map(
            lambda index: convert_image(self._open(self._item(index)), image_size, channels),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def load(self, image_size, channels, indices=None):
        """The images at `indices` (default: all) as a uint8 `(len(indices), image_size, image_size, channels)` array.

        Example:
        >>> ImageFolder("pets/").load(32, 1, indices=[3, 1]).shape
        (2, 32, 32, 1)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        images = np.empty((len(indices), image_size, image_size, channels), np.uint8)
        start = 0
        for batch in self.dataset(image_size, channels, indices).batch(BATCH).as_numpy_iterator():
            images[start : start + len(batch)] = batch
            start += len(batch)
        return images

    def __repr__(self):
        return f"<{type(self).__name__}: {self.description}>"

    def _indices(self, indices):
        count = len(self)
        if indices is None:
            return np.arange(count, dtype=np.int64)
        array = np.asarray(indices)
        if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D array of integers; got {array.dtype} of shape {array.shape}.")
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= count):
            raise ValueError(
                f"indices must lie in [0, {count}) for {self.description}; "
                f"got values from {array.min()} to {array.max()}."
            )
        return array

    def _name(self, index):
        return f"{self.description} image {index}"

    def _labels(self):
        raise NotImplementedError

    def _item(self, index):
        """A tensor function: index -> what `_open` reads the image from (cheap: a path, say)."""
        raise NotImplementedError

    def _open(self, item):
        """A tensor function: item -> encoded bytes or a decoded image."""
        return item

    def _indexed_items(self):
        """(index, item) pairs of every image, in order."""
        return tf.data.Dataset.range(len(self)).map(lambda index: (index, self._item(index)))


class ImageFolder(ImageSource):
    """Image files in a folder: one subfolder per class (labelled), or images directly in it (unlabeled).

    Class names are the sorted subfolder names; each class's images are found
    recursively inside its folder, in sorted order. A flat folder's images are
    the image files directly in it. Hidden files and folders (names starting
    with '.') and files without an image extension (`IMAGE_EXTENSIONS`,
    any case) are ignored. Only the paths are held: images are read and
    decoded as a pipeline pulls them.

    Example:
    >>> pets = ImageFolder("pets/")  # pets/cat/*.jpg, pets/dog/*.jpg
    >>> pets.description, pets.class_names
    ('image folder pets (2 classes, 1,234 images)', ['cat', 'dog'])
    """

    def __init__(self, path):
        self.path = Path(path)
        self._path_tensor = None
        if not self.path.exists():
            raise ImageDataError(f"Image folder {self.path} does not exist: check the path.")
        if not self.path.is_dir():
            raise ImageDataError(
                f"{self.path} is not a folder: pass a folder of images (or one subfolder per class) "
                "or a .npy/.npz file."
            )
        loose, subfolders = [], []
        for entry in sorted(os.scandir(self.path), key=lambda entry: entry.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(entry.name)
            elif _is_image(entry.name):
                loose.append(entry.path)
        found = {name: _images_under(self.path / name) for name in subfolders}
        classes = [name for name in subfolders if found[name]]
        extensions = ", ".join(IMAGE_EXTENSIONS)
        if loose and classes:
            raise ImageDataError(
                f"{self.path} holds both image files ({Path(loose[0]).name}, ...) and class subfolders "
                f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}): it is ambiguous; move the loose "
                "files into a class folder, or point at a folder that holds only images."
            )
        if loose:
            self.paths, self._label_array, self.class_names = loose, None, None
            self.description = f"image folder {self.path} ({_counts(None, _plural(len(loose), 'image'))})"
            return
        if not classes:
            raise ImageDataError(
                f"No images found in {self.path}: it must hold image files ({extensions}) directly, "
                "or in one subfolder per class."
            )
        empty = [name for name in subfolders if not found[name]]
        if empty:
            raise ImageDataError(
                f"Class folders without images in {self.path}: {', '.join(empty)}; add images ({extensions}) "
                "to them or remove them."
            )
        self.paths = [path for name in classes for path in found[name]]
        self._label_array = np.repeat(np.arange(len(classes), dtype=np.int64), [len(found[name]) for name in classes])
        self.class_names = classes
        self.description = f"image folder {self.path} ({_counts(classes, _plural(len(self.paths), 'image'))})"

    def __len__(self):
        return len(self.paths)

    def _labels(self):
        return self._label_array.copy()

    def _name(self, index):
        return f"Image file {self.paths[index]}"

    def _item(self, index):
        if self._path_tensor is None:
            with tf.init_scope():  # an eager tensor, kept, even when first asked for while tracing a map
                self._path_tensor = tf.constant(self.paths)
        return tf.gather(self._path_tensor, index)

    def _open(self, path):
        return tf.io.read_file(path)


def _is_image(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder):
    """Sorted paths of the image files anywhere under `folder`, hidden files and folders skipped."""
    paths = []
    for root, directories, files in os.walk(folder):
        directories[:] = [name for name in directories if not name.startswith(".")]
        paths.extend(os.path.join(root, name) for name in files if _is_image(name))
    return sorted(paths)


class ArrayImages(ImageSource):
    """Images given as a numpy array, with optional labels; the one source held in memory.

    `images`: uint8 `(n, h, w)` or `(n, h, w, c)` with c in 1, 3 or 4 (an
    alpha channel is dropped when converting); float images must lie in
    [0, 1] and become uint8 as `round(x * 255)` (they are never rescaled
    twice). Other integer types are accepted when their values lie in
    [0, 255]. `labels`: integers (class names default to "0", "1", ...) or
    strings (class names: their sorted unique values). Images keep their
    stored size; `dataset` and `load` convert to the size asked for.

    Example:
    >>> source = ArrayImages(np.zeros((10, 28, 28), "uint8"), labels=np.arange(10) % 2)
    >>> source.class_names, source.load(16, 3).shape
    (['0', '1'], (10, 16, 16, 3))
    """

    def __init__(self, images, labels=None, class_names=None, description="arrays"):
        images = _as_uint8_images(images)
        self._images = images
        self._tensor = None
        if labels is None:
            if class_names is not None:
                raise ImageDataError("class_names were given without labels: pass labels too, or drop class_names.")
            self._label_array, self.class_names = None, None
        else:
            self._label_array, self.class_names = _as_labels(labels, class_names, len(images))
        n, height, width, channels = images.shape
        shape = f"{_plural(n, 'image')} of {height}x{width}x{channels}"
        self.description = f"{description} ({_counts(self.class_names, shape)})"

    @classmethod
    def from_file(cls, path):
        """Images from a `.npy` file (unlabeled) or a `.npz` file.

        A `.npz` file holds `images` (or `x`), optional `labels` (or `y`) and
        optional `class_names`. Pickled object arrays are refused.

        Example:
        >>> np.savez("pets.npz", images=images, labels=labels, class_names=["cat", "dog"])
        >>> ArrayImages.from_file("pets.npz").class_names
        ['cat', 'dog']
        """
        path = Path(path)
        if not path.is_file():
            raise ImageDataError(f"Array file {path} does not exist: check the path.")
        suffix = path.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise ImageDataError(f"{path} is not a .npy or .npz file: save the images with numpy.save or numpy.savez.")
        try:
            # No pickles: loading one runs arbitrary code. String arrays load without them.
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ImageDataError(
                f"{path} cannot be read as a numpy {suffix} file ({error}): re-save it with numpy."
            ) from error
        description = f"array file {path}"
        if suffix == ".npy":
            return cls(loaded, description=description)
        with loaded:
            keys = list(loaded.keys())
            image_key = next((key for key in ("images", "x") if key in keys), None)
            if image_key is None:
                raise ImageDataError(
                    f"{path} has no 'images' (or 'x') array; it holds {keys}: save the images under 'images'."
                )
            label_key = next((key for key in ("labels", "y") if key in keys), None)
            labels = loaded[label_key] if label_key else None
            class_names = [str(name) for name in loaded["class_names"]] if "class_names" in keys else None
            return cls(loaded[image_key], labels=labels, class_names=class_names, description=description)

    def __len__(self):
        return len(self._images)

    def _labels(self):
        return self._label_array.copy()

    def check(self):
        """Shape statistics, without decoding: the arrays are already images.

        Example:
        >>> ArrayImages(np.zeros((4, 28, 28), "uint8")).check()
        {'count': 4, 'channels': 1, 'min_size': (28, 28), 'max_size': (28, 28)}
        """
        n, height, width, channels = self._images.shape
        grey = channels == 1
        return {"count": n, "channels": 1 if grey else 3, "min_size": (height, width), "max_size": (height, width)}

    def dataset(self, image_size, channels, indices=None, shuffle_seed=None):
        """Unbatched uint8 `(image_size, image_size, channels)` images; see `ImageSource.dataset`.

        Example:
        >>> ArrayImages(images).dataset(28, 1, shuffle_seed=0).batch(32)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        ordered = tf.data.Dataset.from_tensor_slices(indices)
        if shuffle_seed is not None:
            ordered = _shuffled(ordered, shuffle_seed, len(indices))
        if self._tensor is None:
            with tf.init_scope():  # one eager copy, shared by every dataset, even if first made while tracing
                self._tensor = tf.convert_to_tensor(self._images)
        images = self._tensor
        # Gather and convert in batches: all images share one shape, and per-image steps cost more.
        return (
            ordered.batch(BATCH)
            .map(
                lambda batch: convert_image(tf.gather(images, batch), image_size, channels),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .unbatch()
        )

    def load(self, image_size, channels, indices=None):
        """The images at `indices` as a uint8 array; see `ImageSource.load`.

        Example:
        >>> ArrayImages(images).load(28, 1, indices=[2, 0]).shape
        (2, 28, 28, 1)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        if self._images.shape[1:] == (image_size, image_size, channels):
            return self._images[indices]  # already as asked: a plain copy
        return super().load(image_size, channels, indices)


def _as_uint8_images(images):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ImageDataError(
            f"images must have shape (n, h, w) or (n, h, w, c) with c in 1, 3 or 4; got shape {images.shape}: "
            "reshape them or move the channel axis last."
        )
    if not all(images.shape):
        raise ImageDataError(f"images are empty (shape {images.shape}): pass at least one image of nonzero size.")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ImageDataError("float images contain NaN or infinite values: fix or drop those images.")
        low, high = float(images.min()), float(images.max())
        if high > 1:
            raise ImageDataError(
                f"float images must lie in [0, 1]; got values up to {high:g}: divide by 255 or pass uint8."
            )
        if low < 0:
            raise ImageDataError(
                f"float images must lie in [0, 1]; got values down to {low:g}: undo the normalisation or pass uint8."
            )
        return np.round(images * 255).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise ImageDataError(
                f"integer images must lie in [0, 255]; got values from {low} to {high}: pass uint8 or floats in [0, 1]."
            )
        return images.astype(np.uint8)
    raise ImageDataError(f"images must be uint8 or float in [0, 1]; got dtype {images.dtype}: convert them.")


def _as_labels(labels, class_names, count):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # (n, 1) columns, as some loaders return them
    if labels.ndim != 1:
        raise ImageDataError(f"labels must have shape (n,); got shape {labels.shape}: pass one class per image.")
    if len(labels) != count:
        raise ImageDataError(f"got {count:,} images but {len(labels):,} labels: pass one label per image.")
    if labels.dtype.kind in "USO":
        labels = labels.astype(str)
        names = sorted(set(labels.tolist())) if class_names is None else [str(name) for name in class_names]
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(labels.tolist()) - set(index))
        if unknown:
            raise ImageDataError(f"labels {unknown[:5]} are not among class_names {names}: add them to class_names.")
        return np.array([index[label] for label in labels.tolist()], np.int64), names
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageDataError(f"labels must be integers or strings; got dtype {labels.dtype}: pass labels.astype(int).")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ImageDataError(f"labels must be >= 0; got {labels.min()}: pass class indices 0, 1, 2, ...")
    top = int(labels.max()) if labels.size else -1
    if class_names is None:
        return labels, [str(i) for i in range(top + 1)]
    names = [str(name) for name in class_names]
    if top >= len(names):
        raise ImageDataError(
            f"label {top} has no class name: class_names has only {len(names)}; pass one name per class."
        )
    return labels, names


class TfdsImages(ImageSource):
    """Images from a TensorFlow Datasets data set, e.g. `cifar10` or `oxford_iiit_pet`, streamed.

    Class names come from the `label_key` feature's names (no such feature:
    unlabeled). With `download=False` (the default) nothing is fetched: the
    data set must already be prepared in `data_dir` (or TFDS's default
    directory), and a `DataNotFoundError` says how to prepare it otherwise.
    A split has no random access: `dataset` streams it, picking `indices`
    on the way, and shuffles in a buffer of `shuffle_buffer` encoded images;
    indices not in increasing order are first gathered into memory (just
    those images, converted).

    Example:
    >>> cifar = TfdsImages("cifar10", split="test")
    >>> cifar.class_names[:3], len(cifar)
    (['airplane', 'automobile', 'bird'], 10000)
    """

    def __init__(
        self,
        name,
        split="train",
        data_dir=None,
        download=False,
        image_key="image",
        label_key="label",
        shuffle_buffer=TFDS_SHUFFLE_BUFFER,
    ):
        import tensorflow_datasets as tfds

        self.name, self.split, self.data_dir, self.download = name, split, data_dir, download
        self.image_key, self.label_key, self.shuffle_buffer = image_key, label_key, shuffle_buffer
        dataset, info = self._load(with_info=True)
        features = info.features
        keys = sorted(features.keys()) if hasattr(features, "keys") else []
        if image_key not in keys:
            raise ImageDataError(
                f"TFDS data set {name!r} has no feature {image_key!r}; its features: {keys}: pass image_key=."
            )
        # Read Image features still encoded: shuffle buffers then hold bytes, and convert_image decodes.
        encoded = isinstance(features[image_key], tfds.features.Image)
        self._decoders = {image_key: tfds.decode.SkipDecoding()} if encoded else None
        label = features[label_key] if label_key in keys else None
        self.class_names = list(label.names) if isinstance(label, tfds.features.ClassLabel) else None
        self._label_array = None
        self._count = int(dataset.cardinality())
        if self._count < 0:  # unknown or infinite: count in one pass that decodes nothing
            self._count = int(self._stream().reduce(np.int64(0), lambda total, _: total + 1))
        self.description = f"tfds {name} ({split}, {_counts(self.class_names, _plural(self._count, 'image'))})"

    def _load(self, with_info=False, decoders=None):
        return load_tfds(self.name, self.split, self.data_dir, self.download, instead="a local image folder",
                         decoders=decoders, with_info=with_info)

    def _stream(self):
        """The split's examples in order, images left encoded where TFDS allows."""
        return self._load(decoders=self._decoders)

    def __len__(self):
        return self._count

    def _labels(self):
        if self._label_array is None:  # one pass over the labels, kept: n integers are small
            key = self.label_key
            parts = list(self._stream().map(lambda example: example[key]).batch(8192).as_numpy_iterator())
            self._label_array = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return self._label_array.copy()

    def _name(self, index):
        return f"{self.description} example {index}"

    def _indexed_items(self):
        key = self.image_key
        return self._stream().map(lambda example: example[key]).enumerate()

    def _raw(self, indices):
        """The images at `indices` (increasing), encoded where TFDS allows, in one pass."""
        key, count = self.image_key, len(self)
        images = self._stream().map(lambda example: example[key])
        if len(indices) == count:  # all of them, in order
            return images
        keep = np.zeros(count, bool)
        keep[indices] = True
        keep = tf.constant(keep)
        # Stop reading after the last index wanted; decode nothing that is dropped.
        return (
            images.enumerate()
            .take(int(indices[-1]) + 1 if len(indices) else 0)
            .filter(lambda index, image: tf.gather(keep, index))
            .map(lambda index, image: image)
        )

    def dataset(self, image_size, channels, indices=None, shuffle_seed=None):
        """Unbatched uint8 `(image_size, image_size, channels)` images, streamed; see `ImageSource.dataset`.

        Example:
        >>> TfdsImages("cifar10").dataset(32, 3, shuffle_seed=0).batch(128)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        if len(indices) > 1 and not (np.diff(indices) > 0).all():
            # No random access: gather the picked images once, then serve them from memory.
            images = tf.data.Dataset.from_tensor_slices(self.load(image_size, channels, indices))
            return images if shuffle_seed is None else _shuffled(images, shuffle_seed, len(indices))
        raw = self._raw(indices)
        if shuffle_seed is not None:
            raw = _shuffled(raw, shuffle_seed, min(self.shuffle_buffer, len(indices)))
        return raw.map(
            lambda image: convert_image(image, image_size, channels),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def load(self, image_size, channels, indices=None):
        """The images at `indices` as a uint8 array, in one streaming pass; see `ImageSource.load`.

        Example:
        >>> TfdsImages("cifar10", split="test").load(32, 3, indices=[9, 2]).shape
        (2, 32, 32, 3)
        """
        image_size, channels = _check_target(image_size, channels)
        indices = self._indices(indices)
        unique, inverse = np.unique(indices, return_inverse=True)
        picked = super().load(image_size, channels, unique)  # sorted: one pass over the split
        return picked if len(unique) == len(indices) and (unique == indices).all() else picked[inverse.reshape(-1)]


def fashion_mnist_images(split="train", data_dir=None, download=True):
    """Fashion-MNIST's `split` ("train" or "test") as labelled `ArrayImages` (uint8 28x28x1).

    Found as `load_fashion_mnist` finds it (`data_dir`, the Debian package,
    the Keras cache, then a download if allowed).

    Example:
    >>> fashion = fashion_mnist_images("test")
    >>> len(fashion), fashion.class_names[0]
    (10000, 'T-shirt/top')
    """
    if split not in ("train", "test"):
        raise ImageDataError(f"Fashion-MNIST has splits 'train' and 'test'; got {split!r}: pick one of them.")
    images, labels = load_fashion_mnist(data_dir=data_dir, download=download)[split]
    return ArrayImages(images, labels, class_names=list(CLASS_NAMES), description=f"fashion_mnist {split}")


def image_source(spec, data_dir=None, download=True):
    """The `ImageSource` a spec names, as the CLI takes it.

    `"fashion_mnist"` or `"fashion_mnist:test"`; `"tfds:NAME"` or
    `"tfds:NAME:SPLIT"` (e.g. `"tfds:cifar10:test"`, `"tfds:mnist:train[:1000]"`);
    a `.npy` / `.npz` file; a folder of images (one subfolder per class, or
    images directly in it). An `ImageSource` is returned as is. `data_dir`
    and `download` apply to Fashion-MNIST and TFDS.

    Example:
    >>> image_source("tfds:cifar10:test").class_names[:2]
    ['airplane', 'automobile']
    >>> image_source("photos/").labelled
    True
    """
    if isinstance(spec, ImageSource):
        return spec
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    if text is None:
        raise ImageDataError(f"An image source is a string or a path; got a {type(spec).__name__}: {_FORMS}.")
    if text == "fashion_mnist" or text.startswith("fashion_mnist:"):
        return fashion_mnist_images(text.partition(":")[2] or "train", data_dir=data_dir, download=download)
    tfds_spec = parse_tfds_spec(text)
    if tfds_spec:
        return TfdsImages(tfds_spec[0], split=tfds_spec[1], data_dir=data_dir, download=download)
    if text.lower().endswith((".npy", ".npz")):
        return ArrayImages.from_file(text)
    if Path(text).is_dir():
        return ImageFolder(text)
    if Path(text).exists():
        raise ImageDataError(f"{text} is neither a folder of images nor a .npy/.npz file: {_FORMS}.")
    raise ImageDataError(f"Unknown image source {text!r} (no such folder or file): {_FORMS}.")


_FORMS = (
    "pass 'fashion_mnist' or 'fashion_mnist:test', 'tfds:NAME' or 'tfds:NAME:SPLIT', "
    "a .npy/.npz file, or a folder of images (one subfolder per class, or images directly in it)"
)
