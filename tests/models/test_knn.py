import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ImageClassifier, ViTEncoder
from keras_pretrain.models.knn import KnnHead, knn_probabilities


def numpy_knn(bank, labels, queries, num_classes, k, temperature):
    """Temperature-weighted votes of the k most cosine-similar labelled embeddings, written out plainly."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(queries) @ unit(bank).T
    shares = np.zeros((len(queries), num_classes))
    for i, row in enumerate(similarity):
        for j in np.argsort(-row)[:k]:
            shares[i, labels[j]] += np.exp(row[j] / temperature)
    return shares / shares.sum(1, keepdims=True)


def test_votes_match_the_plain_numpy_reference():
    rng = np.random.default_rng(0)
    bank, labels, queries = rng.normal(size=(30, 8)), rng.integers(0, 3, 30), rng.normal(size=(5, 8))
    expected = numpy_knn(bank, labels, queries, 3, k=7, temperature=0.1)
    np.testing.assert_allclose(knn_probabilities(bank, labels, queries, 3, k=7, temperature=0.1), expected, atol=1e-6)
    head = KnnHead(bank, labels, num_classes=3, k=7, temperature=0.1)
    shares = ops.convert_to_numpy(ops.softmax(head(queries.astype("float32")), axis=-1))
    np.testing.assert_allclose(shares, expected, atol=1e-5)
    assert KnnHead(bank, labels, num_classes=3, k=100).k == 30  # never more neighbours than labelled examples


def test_a_knn_classifier_saves_and_loads_with_its_bank(tmp_path, images):
    rng = np.random.default_rng(0)
    head = KnnHead(rng.normal(size=(12, 16)), np.arange(12) % 3, num_classes=3, k=5, name="head")
    classifier = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, head=head)
    classifier.build((None, 28, 28, 1))
    expected = ops.convert_to_numpy(classifier(images))
    classifier.save(tmp_path / "knn.keras")
    loaded = keras.saving.load_model(tmp_path / "knn.keras")
    assert isinstance(loaded.head, KnnHead) and loaded.head.k == 5
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(images)), expected, atol=1e-6)
    assert not loaded.head.trainable_weights


def test_a_plain_classifier_keeps_its_dense_head(tmp_path, images):
    classifier = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3)
    classifier.build((None, 28, 28, 1))
    assert classifier.get_config()["head"] is None
    classifier.save(tmp_path / "dense.keras")
    assert isinstance(keras.saving.load_model(tmp_path / "dense.keras").head, keras.layers.Dense)
    with pytest.raises(TypeError):
        KnnHead(np.zeros((2, 4)), [0, 1])  # the number of classes must be given
