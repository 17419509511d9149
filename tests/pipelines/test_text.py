import csv

import numpy as np
import pytest

from keras_pretrain.pipelines import (
    TextDataConfig,
    TextPipeline,
    TextPipelineConfig,
    TokenizerConfig,
)
from keras_pretrain.pipelines.text import from_preset
from tests.conftest import write_labelled_csv


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


def pipeline(tmp_path, **data):
    config = TextPipelineConfig(data=TextDataConfig(**data), tokenizer=TokenizerConfig(vocabulary_size=60),
                                output_dir=str(tmp_path / "run"))
    config.evaluation.labels_per_class, config.evaluation.val_per_class = 2, 2
    return TextPipeline(config, verbose=0)


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_evaluation_texts_are_never_pretrained_on_wherever_they_appear(tmp_path):
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=10)
    with open(table) as f:
        rows = list(csv.DictReader(f))
    notes = tmp_path / "notes.txt"
    notes.write_text("".join(row["text"] + "\n" for row in rows) + "an unlabeled line about goals\n")
    data = pipeline(tmp_path, labelled=str(table), unlabeled=[str(notes)]).load_data()
    evaluation = set(data.splits.val.inputs) | set(data.splits.test.inputs)
    corpus = list(data.pretraining.corpus())
    assert len(evaluation) == 8 and not evaluation & set(corpus)  # also not through notes.txt
    assert corpus.count(data.splits.train.inputs[0]) == 2  # the labelled file's copy and the notes' copy
    assert "an unlabeled line about goals" in corpus
    only_notes = pipeline(tmp_path, labelled=str(table), unlabeled=[str(notes)], pretrain_on_labelled=False).load_data()
    assert len(list(only_notes.pretraining.corpus())) == 21 - 8


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_a_separate_test_table_is_matched_by_label_and_packed_batching(tmp_path):
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=8)
    test = tmp_path / "test.csv"
    test.write_text("label,text\ncooking,salt and flour\nsport,a late goal\ncooking,bake the bread\n")
    pipe = pipeline(tmp_path, labelled=str(table), test=str(test), batching="packed")
    data = pipe.load_data()
    assert data.splits.class_names == ["cooking", "sport"] and data.splits.test.labels.tolist() == [0, 1, 0]
    assert not data.description["test_carved"] and len(list(data.pretraining.corpus())) == 16 - 4  # minus validation
    pipe.config.backbone.sequence_length = 16
    dataset, batches, tokens, sequences = pipe.sequences(data.pretraining.corpus(), data.pretraining.tokenizer, 4)
    first = next(iter(dataset))
    assert first["token_ids"].shape == (4, 16) and np.asarray(first["padding_mask"]).all()  # packed: full sequences
    assert 4 * 16 * (batches - 1) < tokens <= 4 * 16 * batches  # only the last sequence of a pass is padded
    assert sequences == 4 * batches
    test.write_text("text,label\nsome text,baking\n")
    with pytest.raises(ValueError, match=r"labels the labelled data lacks: \['baking'\]"):
        pipeline(tmp_path, labelled=str(table), test=str(test)).load_data()


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
@pytest.mark.parametrize("replicas, sizes", [(1, {8: 8, 16: 4}), (3, {8: 6, 16: 3})])
def test_token_batching_reaches_the_data_in_multiples_of_each_process_replicas(tmp_path, replicas, sizes):
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=40)  # texts of 9 words: width 16
    notes = tmp_path / "notes.txt"
    notes.write_text("ball goal\npan salt\n" * 20)  # width 8
    pipe = pipeline(tmp_path, labelled=str(table), unlabeled=[str(notes)], bucket_widths=[8], batch_by="tokens")
    data = pipe.load_data()
    pipe.config.backbone.sequence_length = 16
    pipe.distribution.num_replicas = replicas
    batch_size = 4 if replicas == 1 else 3
    dataset, _, _, sequences = pipe.sequences(data.pretraining.corpus(), data.pretraining.tokenizer, batch_size)
    shapes = {batch["token_ids"].shape[1]: batch["token_ids"].shape[0] for batch in dataset}
    assert shapes == sizes  # 4 x 16 = 64 token slots: 8 sequences of width 8 (6 in threes), 4 of 16 (3)
    assert sequences == sum(batch["token_ids"].shape[0] for batch in dataset)


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_token_batching_is_stated_at_the_start_of_pretraining(tmp_path, capsys):
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=20)
    pipe = pipeline(tmp_path, labelled=str(table), batch_by="tokens")
    pipe.verbose = 1
    backbone, config = pipe.config.backbone, pipe.config.pretrain
    backbone.num_layers, backbone.hidden_dim, backbone.intermediate_dim, backbone.sequence_length = 1, 16, 32, 16
    config.epochs, config.budget_minutes, config.batch_size = 1, None, 4
    pipe.pretrain(pipe.load_data())
    assert "pre-training on 7 batches of 64 token slots per pass (28 sequences, 400 tokens" in capsys.readouterr().out


def test_bad_text_options_are_refused_when_set():
    with pytest.raises(ValueError, match="data.batching must be 'bucketed' or 'packed'"):
        TextDataConfig(batching="sorted")
    with pytest.raises(ValueError, match="data.document must be 'lines', 'paragraphs' or 'files'"):
        TextDataConfig(document="pages")
    with pytest.raises(ValueError, match="data.batch_by must be 'sequences' or 'tokens'"):
        TextDataConfig(batch_by="words")
    assert np.isclose(TextPipelineConfig().mlm.mask_rate, 0.15)


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_pretraining_continues_from_a_keras_hub_preset(tmp_path):
    import keras_hub
    from keras import ops

    from keras_pretrain.data import TextCorpus, train_word_piece_tokenizer
    from keras_pretrain.pipelines import BertConfig

    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=10)
    tokenizer = train_word_piece_tokenizer(TextCorpus.from_files(table), 70)
    saved = keras_hub.models.BertBackbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                                          hidden_dim=16, intermediate_dim=32, max_sequence_length=32)
    saved.save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    config = TextPipelineConfig(data=TextDataConfig(labelled=str(table)),
                                backbone=BertConfig(preset=str(tmp_path / "preset"), sequence_length=32))
    config.evaluation.labels_per_class, config.evaluation.val_per_class = 2, 2
    text = TextPipeline(config, verbose=0)
    data = text.load_data()
    assert data.pretraining.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()  # the preset's, not a new one
    mlm = text.pretrain_model(data.pretraining.tokenizer, total_steps=10)
    for a, b in zip(mlm.backbone.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), b)  # starts from the preset's weights
    config.backbone.sequence_length = 64
    with pytest.raises(ValueError, match="takes at most 32 tokens: set backbone.sequence_length"):
        text.new_backbone(tokenizer.vocabulary_size(), 0.0)


def test_a_published_preset_that_cannot_download_is_one_line_naming_the_fix():
    class Offline:
        @classmethod
        def from_preset(cls, preset, **kwargs):
            raise OSError("Max retries exceeded with url: api.kaggle.com\n(Caused by NameResolutionError)")

    with pytest.raises(RuntimeError, match=r"^The keras-hub preset 'bert_tiny_en_uncased' could not be loaded "
                                           r"\(OSError: Max retries .* \(Caused by NameResolutionError\)\): a published "
                                           r"preset downloads on first use, .* or pass a preset directory") as error:
        from_preset(Offline, "bert_tiny_en_uncased")
    assert len(str(error.value).splitlines()) == 1
