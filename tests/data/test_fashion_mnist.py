import gzip

import numpy as np
import pytest

from keras_pretrain.data import DataNotFoundError, fashion_mnist, few_label_split, load_fashion_mnist, read_idx
from tests.conftest import write_idx


def test_idx_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_idx_bad_magic_and_truncation(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"\x01\x02\x03\x04" + bytes(16))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="truncated: header says \\(10,\\), found 3 values"):
        read_idx(tmp_path / "short.gz")
    with gzip.open(tmp_path / "header.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big"))  # three sizes announced, one there
    with pytest.raises(ValueError, match="header.gz is truncated: its header names 3 sizes, the file ends before"):
        read_idx(tmp_path / "header.gz")


def test_load_from_a_directory(fashion_dir):
    data = load_fashion_mnist(fashion_dir)
    images, labels = data["train"]
    assert images.shape == (400, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (400,) and set(labels) == set(range(10))
    assert data["test"][0].shape == (100, 28, 28, 1)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="must hold train-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_nothing_found_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DataNotFoundError) as error:
        load_fashion_mnist(download=False)
    message = str(error.value)
    assert str(tmp_path / "debian") in message and str(tmp_path / "keras") in message
    assert "download: disabled" in message and "apt-get install dataset-fashion-mnist" in message


def test_keras_cache_is_used(fashion_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    (cache / "fashion-mnist").symlink_to(fashion_dir)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert load_fashion_mnist(download=False)["train"][0].shape[0] == 400


def test_few_label_split_is_exact_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    train, val = few_label_split(labels, per_class=3, val_per_class=5, seed=7)
    assert np.bincount(labels[train]).tolist() == [3] * 10
    assert np.bincount(labels[val]).tolist() == [5] * 10
    assert not set(train) & set(val)
    again, _ = few_label_split(labels, per_class=3, val_per_class=5, seed=7)
    other, _ = few_label_split(labels, per_class=3, val_per_class=5, seed=8)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


def test_few_label_split_errors():
    labels = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match="at least 1"):
        few_label_split(labels, per_class=0)
    with pytest.raises(ValueError, match="class 0 has 4 examples"):
        few_label_split(labels, per_class=3, val_per_class=2)
