import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ImageClassifier, ViTEncoder


def small_classifier(pooling):
    classifier = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, pooling=pooling)
    classifier.build((None, 28, 28, 1))
    # A head norm that is not the identity, so the reference below has to apply it the same way.
    rng = np.random.default_rng(1)
    classifier.head_norm.set_weights([rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32")])
    return classifier


def numpy_layer_norm(x, gamma, beta, epsilon=1e-6):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + epsilon) * gamma + beta


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
def test_embeddings_match_a_numpy_reference(images, pooling):
    classifier = small_classifier(pooling)
    tokens = ops.convert_to_numpy(classifier.encoder(images))  # (8, 16 patches, 16)
    gamma, beta = classifier.head_norm.get_weights()
    if pooling == "mean":
        expected = numpy_layer_norm(tokens.mean(1), gamma, beta)
    else:  # each patch's token normalised, then all of them side by side in patch order
        expected = numpy_layer_norm(tokens, gamma, beta).reshape(len(images), 16 * 16)
    embeddings = ops.convert_to_numpy(classifier.embed(images))
    assert embeddings.shape == (8, classifier.embedding_dim) == expected.shape
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    assert tuple(classifier(images).shape) == (8, 3)


def test_flatten_pooling_survives_saving(tmp_path, images):
    classifier = small_classifier("flatten")
    expected = ops.convert_to_numpy(classifier(images))
    classifier.save(tmp_path / "flatten.keras")
    loaded = keras.saving.load_model(tmp_path / "flatten.keras")
    assert loaded.pooling == "flatten" and loaded.embedding_dim == 256
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(images)), expected, atol=1e-6)


def test_an_unknown_pooling_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown pooling 'max': choose one of mean, flatten"):
        ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, pooling="max")
