import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_pretrain.data.fashion_mnist import CLASS_NAMES, DataNotFoundError
from keras_pretrain.data.images import (
    IMAGE_EXTENSIONS,
    ArrayImages,
    ImageDataError,
    ImageFolder,
    ImageSource,
    TfdsImages,
    convert_image,
    fashion_mnist_images,
    image_source,
)

GREY_VALUE = 100
COLOUR = (200, 100, 50)
COLOUR_AS_GREY = round(0.2989 * 200 + 0.5870 * 100 + 0.1140 * 50)  # tf.image.rgb_to_grayscale's weights


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)


@pytest.fixture
def class_folder(tmp_path):
    """Two classes, sizes 20x20, 23x37 and 24x24, grey, RGB, RGBA and a JPEG; plus files to ignore."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    save(root / "cat" / "grey.png", np.full((20, 20), GREY_VALUE))
    save(root / "cat" / "rgb.png", np.broadcast_to(COLOUR, (23, 37, 3)))
    alpha = rng.integers(0, 256, (20, 20, 1))
    save(root / "dog" / "rgba.PNG", np.concatenate([np.broadcast_to(COLOUR, (20, 20, 3)), alpha], axis=-1), "RGBA")
    save(root / "dog" / "nested" / "photo.jpg", rng.integers(0, 256, (24, 24, 3)))
    (root / "dog" / "notes.txt").write_text("not an image, and not an image extension")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored: hidden")
    save(root / "dog" / ".thumbnails" / "thumb.png", np.zeros((4, 4)))
    save(root / ".cache" / "x.png", np.zeros((4, 4)))
    return root


@pytest.fixture
def flat_folder(tmp_path):
    """Twelve 8x8 grey images, image i filled with 10 * i, so a value tells which image it is."""
    root = tmp_path / "flat"
    for i in range(12):
        save(root / f"{i:02d}.png", np.full((8, 8), 10 * i))
    (root / "empty_subfolder").mkdir()
    return root


def order_of(images):
    """The indices of flat_folder's images, from their constant values."""
    return [int(image[0, 0, 0]) // 10 for image in images]


def test_class_folder_labels_and_class_names(class_folder):
    source = ImageFolder(class_folder)
    assert isinstance(source, ImageSource) and source.labelled and len(source) == 4
    assert source.class_names == ["cat", "dog"]
    relative = [path.split("pets/")[1] for path in source.paths]
    assert relative == ["cat/grey.png", "cat/rgb.png", "dog/nested/photo.jpg", "dog/rgba.PNG"]
    labels = source.labels()
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1, 1]
    assert source.description == f"image folder {class_folder} (2 classes, 4 images)"


@pytest.mark.parametrize("channels", [1, 3])
def test_conversion_to_size_and_channels(class_folder, channels):
    source = ImageFolder(class_folder)
    images = source.load(16, channels)
    assert images.shape == (4, 16, 16, channels) and images.dtype == np.uint8
    assert source.dataset(16, channels).element_spec == tf.TensorSpec((16, 16, channels), tf.uint8)
    grey, rgb, _, rgba = images
    assert (grey == GREY_VALUE).all()  # resizing a constant image keeps its value
    if channels == 3:
        assert (rgb == COLOUR).all() and (rgba == COLOUR).all()  # alpha dropped
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    else:
        assert (rgb == COLOUR_AS_GREY).all() and (rgba == COLOUR_AS_GREY).all()


def test_convert_image_takes_bytes_images_and_batches():
    png = tf.io.encode_png(np.full((5, 7, 1), 9, np.uint8))
    assert convert_image(png, 4, 3).numpy().tolist() == np.full((4, 4, 3), 9).tolist()
    batch = np.zeros((2, 6, 6, 3), np.uint8)
    batch[:, :, :, 0] = 200  # a colour: any change to the pixels would show
    assert np.array_equal(convert_image(batch, 6, 3), batch)  # already the size and channels asked for
    assert convert_image(batch, 3, 1).shape == (2, 3, 3, 1)
    with pytest.raises(ValueError, match="channels must be 1 .grey. or 3 .RGB.; got 2"):
        convert_image(png, 4, 2)


def test_dataset_follows_indices_like_load(class_folder):
    source = ImageFolder(class_folder)
    indices = [3, 0, 2]
    streamed = np.stack(list(source.dataset(12, 3, indices=indices).as_numpy_iterator()))
    loaded = source.load(12, 3, indices=indices)
    assert (streamed == loaded).all() and (loaded == source.load(12, 3)[indices]).all()
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        source.load(12, 3, indices=[4])
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        source.load(0, 3)


def test_shuffle_is_a_new_permutation_each_pass_and_reproducible(flat_folder):
    source = ImageFolder(flat_folder)
    data = source.dataset(8, 1, shuffle_seed=3)
    first, second = order_of(data), order_of(data)
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second and first != list(range(12))
    again = source.dataset(8, 1, shuffle_seed=3)
    assert order_of(again) == first and order_of(again) == second
    assert order_of(source.dataset(8, 1)) == list(range(12))
    assert sorted(order_of(source.dataset(8, 1, indices=[5, 1, 7], shuffle_seed=0))) == [1, 5, 7]


def test_check_statistics(class_folder, flat_folder):
    assert ImageFolder(class_folder).check() == {"count": 4, "channels": 3, "min_size": (20, 20), "max_size": (24, 37)}
    assert ImageFolder(flat_folder).check() == {"count": 12, "channels": 1, "min_size": (8, 8), "max_size": (8, 8)}


def test_flat_folder_is_unlabeled(flat_folder):
    source = ImageFolder(flat_folder)
    assert not source.labelled and source.class_names is None and len(source) == 12
    assert source.description == f"image folder {flat_folder} (12 images, unlabeled)"
    with pytest.raises(ImageDataError, match="has no labels: use it unlabeled"):
        source.labels()


def test_one_class_is_fine_here(tmp_path):
    save(tmp_path / "only" / "a.png", np.zeros((4, 4)))
    source = ImageFolder(tmp_path)
    assert source.class_names == ["only"] and source.description.endswith("(1 class, 1 image)")


def test_folder_errors(tmp_path, class_folder):
    with pytest.raises(ImageDataError, match="missing does not exist: check the path"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ImageDataError, match="file.png is not a folder"):
        ImageFolder(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ImageDataError, match=r"No images found in .*empty: it must hold image files \(\.png, \.jpg"):
        ImageFolder(tmp_path / "empty")
    save(class_folder / "loose.png", np.zeros((4, 4)))
    with pytest.raises(ImageDataError, match=r"image files \(loose.png, ...\) and class subfolders \(cat, dog\).*move"):
        ImageFolder(class_folder)
    (class_folder / "loose.png").unlink()
    (class_folder / "bird").mkdir()
    (class_folder / "fish").mkdir()
    with pytest.raises(ImageDataError, match="Class folders without images in .*pets: bird, fish; add images"):
        ImageFolder(class_folder)


def test_check_names_an_undecodable_file(class_folder):
    (class_folder / "dog" / "bad.png").write_bytes(b"not an image")
    source = ImageFolder(class_folder)  # found by its extension; only decoding tells
    with pytest.raises(ImageDataError, match=r"Image file .*dog/bad\.png cannot be decoded as an image: remove"):
        source.check()


def test_float_arrays_in_unit_range_equal_their_uint8_version():
    uint8 = np.random.default_rng(0).integers(0, 256, (6, 9, 9, 3)).astype(np.uint8)
    as_float = ArrayImages(uint8.astype(np.float32) / 255)
    assert (as_float.load(9, 3) == uint8).all()
    assert (as_float.load(5, 1) == ArrayImages(uint8).load(5, 1)).all()
    grey = ArrayImages(uint8[..., 0])  # (n, h, w): a channel axis is added
    assert grey.check() == {"count": 6, "channels": 1, "min_size": (9, 9), "max_size": (9, 9)}
    assert (grey.load(9, 3) == np.repeat(uint8[..., :1], 3, axis=-1)).all()
    assert (ArrayImages(uint8.astype(np.int64)).load(9, 3) == uint8).all()


def test_array_dataset_order_shuffle_and_labels():
    images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1) * np.ones((1, 6, 6, 1), np.uint8)
    source = ArrayImages(images, labels=np.arange(40) % 4)
    assert source.class_names == ["0", "1", "2", "3"] and source.labels().dtype == np.int64
    assert source.description == "arrays (4 classes, 40 images of 6x6x1)"
    indices = [7, 3, 30]
    streamed = np.stack(list(source.dataset(4, 3, indices=indices).as_numpy_iterator()))
    assert (streamed == source.load(4, 3, indices=indices)).all() and streamed[:, 0, 0, 0].tolist() == indices
    data = source.dataset(6, 1, shuffle_seed=1)
    first, second = ([int(image[0, 0, 0]) for image in data] for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(40)) and first != second
    assert [int(image[0, 0, 0]) for image in source.dataset(6, 1, shuffle_seed=1)] == first


def test_array_errors():
    images = np.zeros((3, 4, 4), np.uint8)
    with pytest.raises(ImageDataError, match=r"must lie in \[0, 1\]; got values up to 255: divide by 255 or pass"):
        ArrayImages(np.full((3, 4, 4), 255.0))
    with pytest.raises(ImageDataError, match=r"float images must lie in \[0, 1\]; got values down to -0.5"):
        ArrayImages(np.full((3, 4, 4), -0.5))
    with pytest.raises(ImageDataError, match="float images contain NaN or infinite values"):
        ArrayImages(np.full((3, 4, 4), np.nan))
    with pytest.raises(ImageDataError, match=r"must have shape \(n, h, w\) or \(n, h, w, c\).*got shape \(4, 4\)"):
        ArrayImages(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageDataError, match=r"got shape \(3, 4, 4, 2\)"):
        ArrayImages(np.zeros((3, 4, 4, 2), np.uint8))
    with pytest.raises(ImageDataError, match=r"integer images must lie in \[0, 255\]; got values from -1 to 256"):
        ArrayImages(np.array([-1, 0, 256]).reshape(3, 1, 1))
    with pytest.raises(ImageDataError, match="got 3 images but 2 labels: pass one label per image"):
        ArrayImages(images, labels=[0, 1])
    with pytest.raises(ImageDataError, match="labels must be integers or strings; got dtype float64"):
        ArrayImages(images, labels=[0.0, 1.0, 0.5])
    with pytest.raises(ImageDataError, match="label 2 has no class name: class_names has only 2"):
        ArrayImages(images, labels=[0, 1, 2], class_names=["a", "b"])
    with pytest.raises(ImageDataError, match="class_names were given without labels"):
        ArrayImages(images, class_names=["a"])


def test_string_labels_and_given_class_names():
    images = np.zeros((4, 4, 4), np.uint8)
    source = ArrayImages(images, labels=["dog", "cat", "dog", "bird"])
    assert source.class_names == ["bird", "cat", "dog"] and source.labels().tolist() == [2, 1, 2, 0]
    named = ArrayImages(images, labels=np.array([[1], [0], [1], [1]]), class_names=["no", "yes"])
    assert named.class_names == ["no", "yes"] and named.labels().tolist() == [1, 0, 1, 1]


def test_npz_and_npy_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3)).astype(np.uint8)
    labels = np.array([0, 1, 1, 0, 1])
    np.savez(tmp_path / "labelled.npz", images=images, labels=labels, class_names=np.array(["no", "yes"]))
    np.savez(tmp_path / "xy.npz", x=images, y=labels)
    np.save(tmp_path / "plain.npy", images)
    labelled = ArrayImages.from_file(tmp_path / "labelled.npz")
    assert labelled.class_names == ["no", "yes"] and labelled.labels().tolist() == labels.tolist()
    assert (labelled.load(6, 3) == images).all()
    assert ArrayImages.from_file(tmp_path / "xy.npz").class_names == ["0", "1"]
    plain = ArrayImages.from_file(tmp_path / "plain.npy")
    assert not plain.labelled and (plain.load(6, 3) == images).all()
    assert plain.description.startswith(f"array file {tmp_path / 'plain.npy'} (5 images")
    np.savez(tmp_path / "other.npz", pixels=images)
    with pytest.raises(ImageDataError, match=r"has no 'images' \(or 'x'\) array; it holds \['pixels'\]"):
        ArrayImages.from_file(tmp_path / "other.npz")
    with pytest.raises(ImageDataError, match="missing.npz does not exist"):
        ArrayImages.from_file(tmp_path / "missing.npz")


def test_fashion_mnist_images(fashion_dir):
    test = fashion_mnist_images("test", data_dir=fashion_dir)
    assert len(test) == 100 and test.class_names == CLASS_NAMES and test.labels()[:3].tolist() == [0, 1, 2]
    assert test.load(28, 1, indices=[0]).shape == (1, 28, 28, 1)
    with pytest.raises(ImageDataError, match="splits 'train' and 'test'; got 'valid'"):
        fashion_mnist_images("valid", data_dir=fashion_dir)


def test_image_source_dispatch(tmp_path, class_folder, fashion_dir):
    assert isinstance(image_source(str(class_folder)), ImageFolder)
    assert image_source(class_folder).class_names == ["cat", "dog"]
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    np.savez(tmp_path / "b.npz", images=np.zeros((2, 4, 4), np.uint8), labels=[0, 1])
    assert isinstance(image_source(tmp_path / "a.npy"), ArrayImages)
    assert image_source(str(tmp_path / "b.npz")).labelled
    assert len(image_source("fashion_mnist", data_dir=fashion_dir)) == 400
    assert len(image_source("fashion_mnist:test", data_dir=fashion_dir)) == 100
    source = ArrayImages(np.zeros((2, 4, 4), np.uint8))
    assert image_source(source) is source
    with pytest.raises(ImageDataError, match=r"Unknown image source 'nowhere/at/all' .*'fashion_mnist'.*'tfds:NAME'"):
        image_source("nowhere/at/all")
    with pytest.raises(ValueError, match="is not .tfds:NAME. or .tfds:NAME:SPLIT."):
        image_source("tfds:")


@pytest.fixture
def tfds():
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
    # Never a real download: the mock serves random examples in the real feature specs.
    with tfds.testing.mock_data(num_examples=9):
        yield tfds


def test_tfds_images_with_mock_data(tfds):
    source = image_source("tfds:mnist:test")
    assert isinstance(source, TfdsImages) and len(source) == 9
    assert source.class_names == [str(i) for i in range(10)]
    assert source.description == "tfds mnist (test, 10 classes, 9 images)"
    labels = source.labels()
    assert labels.dtype == np.int64 and labels.shape == (9,) and set(labels) <= set(range(10))
    assert labels.tolist() == [int(e["label"]) for e in tfds.load("mnist", split="test")]
    everything = source.load(28, 1)
    assert everything.shape == (9, 28, 28, 1) and everything.dtype == np.uint8
    direct = np.stack([example["image"] for example in tfds.as_numpy(tfds.load("mnist", split="test"))])
    assert (everything == direct).all()
    assert (source.load(28, 1, indices=[6, 2, 2]) == everything[[6, 2, 2]]).all()  # any order, one pass
    assert (np.stack(list(source.dataset(28, 1, indices=[1, 4]).as_numpy_iterator())) == everything[[1, 4]]).all()
    assert (np.stack(list(source.dataset(28, 1, indices=[4, 1]).as_numpy_iterator())) == everything[[4, 1]]).all()
    rgb = source.load(14, 3, indices=[0])
    assert rgb.shape == (1, 14, 14, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    shuffled = source.dataset(28, 1, shuffle_seed=0)
    first = [next(i for i in range(9) if (image == everything[i]).all()) for image in shuffled.as_numpy_iterator()]
    assert sorted(first) == list(range(9)) and first != list(range(9))
    assert source.check() == {"count": 9, "channels": 1, "min_size": (28, 28), "max_size": (28, 28)}


def test_tfds_keys(tfds):
    unlabeled = TfdsImages("cifar10", split="train", label_key=None)
    assert not unlabeled.labelled and unlabeled.load(32, 3, indices=[0]).shape == (1, 32, 32, 3)
    assert len(TfdsImages("cifar10").class_names) == 10  # the mock's metadata names them "0" to "9"
    with pytest.raises(ImageDataError, match=r"no feature 'picture'; its features: \['id', 'image', 'label'\]"):
        TfdsImages("cifar10", image_key="picture")


def test_tfds_that_cannot_load_offline_is_a_clear_error(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
    real_load = tfds.load

    def offline_load(name, **kwargs):
        assert not kwargs.get("download"), "the default must never download"
        return real_load(name, **kwargs)

    monkeypatch.setattr(tfds, "load", offline_load)
    with pytest.raises(DataNotFoundError, match=r"'mnist' \(split 'train'\) could not be loaded offline") as error:
        TfdsImages("mnist", data_dir=tmp_path)
    assert "tfds build mnist" in str(error.value) and str(tmp_path) in str(error.value)
    assert len(str(error.value).splitlines()) == 1  # TFDS's own message runs over several lines
    with pytest.raises(DataNotFoundError, match=r"TFDS has no data set 'mnits'; did you mean mnist"):
        TfdsImages("mnits", data_dir=tmp_path)


def test_extensions_are_the_documented_ones():
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".gif")
