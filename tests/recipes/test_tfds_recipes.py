"""The TFDS recipes, offline: `tfds.testing.mock_data` stands in for the downloads (random data, real feature specs)."""

import json

import pytest
import tensorflow_datasets as tfds

from keras_pretrain import cli

SMALL = ["--quick", "--labels-per-class", "1", "--set", "evaluation.val_per_class=1", "evaluation.finetune_epochs=2",
         "pretrain.batch_size=8", "export.enabled=False"]


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_mae_cifar10_reads_tfds_train_and_test(tmp_path):
    with tfds.testing.mock_data(num_examples=120):
        code = cli.main(["run", "mae_cifar10", "--output", str(tmp_path / "run"), *SMALL, "encoder.hidden_dim=16",
                         "encoder.depth=1", "encoder.num_heads=2", "mae.decoder_dim=16"])
    assert code == 0
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["data"]["labelled"].startswith("tfds cifar10 (train") and written["data"]["test"].startswith("tfds cifar10 (test")
    assert written["data"]["image_shape"] == [32, 32, 3] and written["data"]["pretraining_images"] == 120
    assert written["test_size"] == 120 and 0.0 <= written["pretrained_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_bert_imdb_reads_tfds_reviews_and_unlabeled_reviews(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        code = cli.main(["run", "bert_imdb", "--output", str(tmp_path / "run"), *SMALL, "backbone.num_layers=1",
                         "backbone.hidden_dim=16", "backbone.intermediate_dim=32", "backbone.sequence_length=32",
                         "tokenizer.vocabulary_size=200",
                         # The mock gives every split the same texts, and test texts are never pre-trained on.
                         "data.test=None"])
    assert code == 0
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["data"]["unlabeled"] == ["tfds imdb_reviews (unsupervised)"]
    assert written["data"]["labelled"].startswith("tfds imdb_reviews (train")
    assert written["config"]["data"]["batching"] == "packed" and written["data"]["test_carved"]
    assert 0.0 <= written["masked_token_accuracy"] <= 1.0
