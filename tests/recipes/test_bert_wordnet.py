import json

import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_pretrain.data import DataNotFoundError, TextCorpus
from keras_pretrain.objectives import MaskedLanguageModel
from keras_pretrain.recipe import load_recipe


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


def tiny_recipe(tmp_path, data_dir, **options):
    recipe = load_recipe(
        "bert_wordnet", data_dir=data_dir, quick=True, labels_per_class=2, verbose=0,
        output_dir=tmp_path / "run", export_root=tmp_path / "saved_models", **options,
    )
    # The smoke run tests the pipeline, not the model size.
    recipe.backbone_config = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    recipe.sequence_length, recipe.vocabulary_size, recipe.vocabulary_sample_every = 32, 200, 1
    recipe.bucket_widths = (16, 24)
    recipe.pretrain_batch_size, recipe.finetune_epochs = 16, 3
    recipe.val_per_class, recipe.test_per_class = 2, 3
    return recipe


def test_splits_are_disjoint_and_the_evaluation_glosses_are_never_pretrained_on(tmp_path, wordnet_dir):
    recipe = tiny_recipe(tmp_path, wordnet_dir)
    data = recipe.load_data()
    assert np.bincount(data.train[1]).tolist() == [2] * 8 and np.bincount(data.test[1]).tolist() == [3] * 8
    train, val, test = (set(split[0]) for split in (data.train, data.val, data.test))
    assert not (train & val or train & test or val & test)
    corpus = set(data.unlabeled)
    assert train <= corpus and not (val | test) & corpus
    assert "move fast on foot" in corpus  # verb glosses are pre-training text too
    # Another label draw keeps the evaluation split.
    other = tiny_recipe(tmp_path, wordnet_dir, seed=1).load_data()
    assert other.test[0] == data.test[0] and other.train[0] != data.train[0]


def test_recipe_hands_out_the_tokenizer_gloss_batches_and_compiled_models(tmp_path, wordnet_dir):
    recipe = tiny_recipe(tmp_path, wordnet_dir)
    data = recipe.load_data()
    tokenizer = recipe.tokenizer(data)
    assert tokenizer.get_vocabulary()[:5] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    glosses, steps_per_epoch, tokens = recipe.pretraining_data(data.unlabeled, tokenizer)
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
    held_out = data.val[0] + data.test[0]
    _, held_out_steps, held_out_tokens = recipe.pretraining_data(
        TextCorpus.from_texts(held_out), tokenizer, [recipe.sequence_length], drop_remainder=False
    )
    lengths = [min(len(tokenizer(text)) + 2, recipe.sequence_length) for text in held_out]
    assert (len(held_out), held_out_steps, held_out_tokens) == (40, 3, sum(lengths))
    mlm = recipe.pretrain_model(tokenizer, steps_per_epoch)
    assert isinstance(mlm, MaskedLanguageModel) and mlm.optimizer is not None and mlm.mask_rate == 0.4
    classifier = recipe.finetune_model(mlm.backbone, tokenizer)
    assert classifier.class_names[:2] == ["artifact", "person"] and classifier.optimizer is not None
    assert classifier.backbone is not mlm.backbone  # fine-tuning works on a copy
    # By default the first grid point, as measured best (the hand-driven path in the docstring).
    # (Layer names carry a counter, so the per-layer multipliers are compared as values.)
    optimizer_config = lambda model: (
        model.optimizer.get_config()["learning_rate"], sorted(model.optimizer.get_config()["lr_multipliers"].values())
    )
    assert optimizer_config(classifier) == optimizer_config(recipe.finetune_model(mlm.backbone, tokenizer, *recipe.finetune_grid[0]))
    assert optimizer_config(classifier) != optimizer_config(recipe.finetune_model(mlm.backbone, tokenizer, 3e-4, 0.8))
    # Pre-training runs without dropout; the fine-tuning copy gets it back.
    assert mlm.backbone.get_config()["dropout"] == 0.0 and classifier.backbone.get_config()["dropout"] == 0.1
    features = recipe.token_ids(data.train[0], tokenizer)
    assert features["token_ids"].shape == (16, 32)


@pytest.mark.slow
def test_smoke_run_writes_results_plots_preset_and_a_string_export(tmp_path, wordnet_dir):
    results = tiny_recipe(tmp_path, wordnet_dir).run()
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == json.loads(json.dumps(results | {"recipe": "bert_wordnet", "backend": written["backend"]}))
    mae_keys = {"recipe", "backend", "labels_per_class", "baseline_accuracy", "baseline_C", "scratch_accuracy",
                "finetune_accuracy", "probe_accuracy", "pretrained_accuracy", "pretrained_protocol",
                "validation_accuracy", "pretrain_epochs", "pretrain_final_loss", "pretrain_seconds",
                "export_path", "export_max_abs_diff", "quick"}
    assert mae_keys | {"masked_token_accuracy"} <= set(written)
    for key in ("baseline_accuracy", "scratch_accuracy", "probe_accuracy", "pretrained_accuracy", "masked_token_accuracy"):
        assert 0.0 <= written[key] <= 1.0
    # Each synthetic category has its own words: bag-of-words must find them.
    assert written["baseline_accuracy"] > 0.5 and written["test_size"] == 24
    assert written["export_path"] == str(tmp_path / "saved_models" / "bert_wordnet" / "1")
    assert written["export_max_abs_diff"] <= 1e-5
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
        tiny_recipe(tmp_path, tmp_path / "no_data").load_data()
