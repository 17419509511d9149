import json

import keras_hub
import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.data import DataNotFoundError, TextCorpus
from keras_pretrain.evaluation import FewLabelEvaluation
from keras_pretrain.objectives import MaskedLanguageModel
from keras_pretrain.pipelines import TextPipeline, load_recipe, pipeline_for


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


# The smoke run tests the pipeline, not the model size.
TINY = ["backbone.num_layers=1", "backbone.hidden_dim=16", "backbone.intermediate_dim=32", "backbone.sequence_length=32",
        "tokenizer.vocabulary_size=200", "tokenizer.sample_every=1", "data.bucket_widths=[16, 24]",
        "pretrain.batch_size=16", "evaluation.finetune_epochs=3", "evaluation.labels_per_class=2",
        "evaluation.val_per_class=2", "evaluation.test_per_class=3", "export.enabled=False"]


def tiny_pipeline(tmp_path, data_dir, *overrides):
    config = load_recipe("bert_wordnet", [*TINY, f"data.data_dir={data_dir}", f"output_dir={tmp_path / 'run'}",
                                          *overrides], quick=True)
    return pipeline_for(config, verbose=0)


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_splits_are_disjoint_and_the_evaluation_glosses_are_never_pretrained_on(tmp_path, wordnet_dir):
    pipeline = tiny_pipeline(tmp_path, wordnet_dir)
    assert isinstance(pipeline, TextPipeline)
    data = pipeline.load_data()
    splits = data.splits
    assert np.bincount(splits.train.labels).tolist() == [2] * 8 and np.bincount(splits.test.labels).tolist() == [3] * 8
    assert splits.class_names[:2] == ["artifact", "person"]
    train, val, test = (set(split.inputs) for split in (splits.train, splits.val, splits.test))
    assert not (train & val or train & test or val & test)
    corpus = set(data.pretraining.corpus())
    assert train <= corpus and not (val | test) & corpus
    assert "move fast on foot" in corpus  # verb glosses are pre-training text too
    # Another label draw keeps the evaluation split.
    other = tiny_pipeline(tmp_path, wordnet_dir, "seed=1").load_data().splits
    assert other.test.inputs == splits.test.inputs and other.train.inputs != splits.train.inputs
    # Each process reads its own share of the documents.
    shares = [list(data.pretraining.corpus(shard=(i, 2))) for i in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(data.pretraining.corpus()) and not set(shares[0]) & set(shares[1])


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_tokenizer_gloss_batches_and_models(tmp_path, wordnet_dir):
    pipeline = tiny_pipeline(tmp_path, wordnet_dir)
    data = pipeline.load_data()
    tokenizer = data.pretraining.tokenizer
    assert isinstance(tokenizer, keras_hub.models.BertTokenizer)
    assert tokenizer.get_vocabulary()[:5] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    glosses, steps_per_epoch, tokens, _ = pipeline.sequences(data.pretraining.corpus(), tokenizer, 16)
    batches = [{k: np.asarray(v) for k, v in batch.items()} for batch in glosses]
    assert len(batches) == steps_per_epoch
    # Each pass drops other glosses (each bucket's partial batch), so the token count varies a little.
    assert abs(sum(b["padding_mask"].sum() for b in batches) - tokens) < 0.05 * tokens
    assert all(len(b["token_ids"]) == 16 and b["token_ids"].shape[1] in (16, 24, 32) for b in batches)
    # One gloss per sequence: [CLS] first, one [SEP] at the end of its tokens.
    for batch in batches:
        assert (batch["token_ids"][:, 0] == 1).all() and ((batch["token_ids"] == 2).sum(1) == 1).all()
        ends = batch["padding_mask"].sum(1) - 1
        assert (batch["token_ids"][np.arange(16), ends] == 2).all()
    # The held-out masked-token accuracy counts every evaluation gloss: 40 of them, 3 batches of up to 16.
    held_out = data.pretraining.exclude
    _, held_out_steps, held_out_tokens, _ = pipeline.sequences(TextCorpus.from_texts(held_out), tokenizer, 16, [32], False)
    lengths = [min(len(tokenizer(text)) + 2, 32) for text in held_out]
    assert (len(held_out), held_out_steps, held_out_tokens) == (40, 3, sum(lengths))
    mlm = pipeline.pretrain_model(tokenizer, steps_per_epoch)
    assert isinstance(mlm, MaskedLanguageModel) and mlm.optimizer is not None and mlm.mask_rate == 0.4
    evaluation = FewLabelEvaluation(pipeline.task(data), data.splits, pipeline.config.evaluation, log=lambda _: None)
    classifier = evaluation.classifier(mlm.backbone)
    assert classifier.class_names[:2] == ["artifact", "person"] and classifier.optimizer is not None
    assert classifier.backbone is not mlm.backbone  # fine-tuning works on a copy
    # Pre-training runs without dropout; the fine-tuning copy gets it back.
    assert mlm.backbone.get_config()["dropout"] == 0.0 and classifier.backbone.get_config()["dropout"] == 0.1
    assert evaluation.features["train"].inputs["token_ids"].shape == (16, 32)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_smoke_run_writes_results_plots_and_a_preset(tmp_path, wordnet_dir):
    results = tiny_pipeline(tmp_path, wordnet_dir).run()
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == json.loads(json.dumps(results | {"recipe": "bert_wordnet", "backend": keras.backend.backend()}))
    keys = {"recipe", "backend", "labels_per_class", "baseline_accuracy", "baseline_C", "scratch_accuracy",
            "finetune_accuracy", "probe_accuracy", "pretrained_accuracy", "pretrained_protocol",
            "validation_accuracy", "pretrain_epochs", "pretrain_final_loss", "pretrain_seconds",
            "masked_token_accuracy", "quick", "config", "test_size", "preset_path"}
    assert keys <= set(written)
    for key in ("baseline_accuracy", "scratch_accuracy", "probe_accuracy", "pretrained_accuracy", "masked_token_accuracy"):
        assert 0.0 <= written[key] <= 1.0
    # Each synthetic category has its own words: bag-of-words must find them.
    assert written["baseline_accuracy"] > 0.5 and written["test_size"] == 24
    for plot in ("pretrain_loss.png", "accuracies.png"):
        assert (tmp_path / "run" / plot).read_bytes()[:4] == b"\x89PNG"

    # The preset: keras-hub loads the pre-trained backbone and tokenizer from the directory alone.
    backbone = keras_hub.models.Backbone.from_preset(written["preset_path"])
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(written["preset_path"])
    assert isinstance(backbone, keras_hub.models.BertBackbone) and backbone.hidden_dim == 16
    token_ids = ops.convert_to_numpy(tokenizer(["a furry animal that barks"]))[0]
    assert len(token_ids) and max(token_ids) < tokenizer.vocabulary_size() == backbone.vocabulary_size
    features = backbone({"token_ids": token_ids[None], "padding_mask": np.ones((1, len(token_ids))),
                         "segment_ids": np.zeros((1, len(token_ids)))})
    assert np.isfinite(ops.convert_to_numpy(features["sequence_output"])).all()


def test_missing_wordnet_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="apt-get install wordnet-base"):
        tiny_pipeline(tmp_path, tmp_path / "no_data").load_data()
