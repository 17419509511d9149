import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import TextClassifier
from keras_pretrain.optimizers import make_adamw

VOCABULARY = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "a", "cat", "dog", "tree", "leaf", "runs", "green", "##s"]
NAMES = ["animal", "plant"]


def tiny_classifier(sequence_length=12):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=sequence_length, dropout=0.0,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    classifier = TextClassifier(backbone, 2, class_names=NAMES, preprocessor=preprocessor)
    classifier.build(None)
    return classifier


def test_pooling_ignores_padding():
    classifier = tiny_classifier()
    token_ids = np.array([[1, 6, 10, 2, 0, 0, 0, 0, 0, 0, 0, 0]] * 2, "int32")
    token_ids[1, 4:] = 8  # different tokens where the padding mask is 0
    padding_mask = (np.arange(12) < 4).astype("int32")[None].repeat(2, 0)
    embeddings = ops.convert_to_numpy(classifier.embed({"token_ids": token_ids, "padding_mask": padding_mask}))
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-5)
    assert ops.convert_to_numpy(classifier({"token_ids": token_ids, "padding_mask": padding_mask})).shape == (2, 2)


def test_fits_raw_strings_through_its_preprocessor_and_round_trips(tmp_path):
    classifier = tiny_classifier()
    texts = ["a cat runs", "a dog runs", "a green tree", "a green leaf"] * 4
    labels = np.array([0, 0, 1, 1] * 4)
    classifier.compile(
        optimizer=make_adamw(classifier, 3e-3, total_steps=60, layer_decay=0.8),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    history = classifier.fit(classifier.preprocess(texts), labels, batch_size=16, epochs=30, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    probabilities = classifier.classify_texts(["a cats", "green leafs"])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert probabilities.argmax(-1).tolist() == [0, 1]

    classifier.save(tmp_path / "classifier.keras")
    reloaded = keras.saving.load_model(tmp_path / "classifier.keras", compile=False)
    assert reloaded.class_names == NAMES
    np.testing.assert_allclose(reloaded.classify_texts(["a cats", "green leafs"]), probabilities, atol=1e-6)


def test_layer_ids_order_embeddings_blocks_and_head():
    classifier = tiny_classifier()
    ids = {v.path: classifier.layer_id(v.path) for v in classifier.trainable_variables}
    assert ids["token_embedding/embeddings"] == 0
    assert {i for p, i in ids.items() if p.startswith("transformer_layer_0/")} == {1}
    assert ids[classifier.head.kernel.path] == 2


def test_no_preprocessor_and_wrong_names_are_clear_errors():
    classifier = tiny_classifier()
    bare = TextClassifier(classifier.backbone, 2)
    with pytest.raises(ValueError, match="no preprocessor"):
        bare.preprocess(["a cat"])
    with pytest.raises(ValueError, match="3 class_names for 2 classes"):
        TextClassifier(classifier.backbone, 2, class_names=["a", "b", "c"])
