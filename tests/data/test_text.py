import keras
import keras_hub
import numpy as np
import pytest

from keras_pretrain.data import (
    CorpusError,
    DataNotFoundError,
    TextCorpus,
    bucketed_dataset,
    packed_dataset,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)
from keras_pretrain.objectives import MaskedLanguageModel

SPECIAL = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
PAD, CLS, SEP, UNK, MASK = range(5)
WORDS = "the cat sat on a mat dog ran to big red house small blue tree".split()


def sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(count)]


def fixed_tokenizer():
    """A tokenizer with known ids: the special tokens, then WORDS in order."""
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=SPECIAL + WORDS, lowercase=True, oov_token="[UNK]")


def test_files_one_document_per_line(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n  second doc  \r\n")
    (tmp_path / "b.txt").write_text("third doc")
    corpus = TextCorpus.from_files([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert list(corpus) == ["first doc", "second doc", "third doc"]
    assert list(corpus) == list(corpus)  # re-iterable


def test_files_blank_line_separated_paragraphs(tmp_path):
    (tmp_path / "a.txt").write_text("para one\nline two\n\n\n  \npara two\r\n")
    assert list(TextCorpus.from_files(tmp_path / "a.txt", mode="paragraphs")) == ["para one line two", "para two"]
    with pytest.raises(ValueError, match="mode must be 'lines' or 'paragraphs'"):
        TextCorpus.from_files(tmp_path / "a.txt", mode="sentences")


def test_texts_from_lists_generators_and_callables():
    assert list(TextCorpus.from_texts(["a b", "  ", b"c d"])) == ["a b", "c d"]
    generated = TextCorpus.from_texts(text for text in ["x", "y"])
    assert list(generated) == list(generated) == ["x", "y"]  # a generator is kept, not used up
    streamed = TextCorpus.from_texts(lambda: iter(["p", "q"]))
    assert list(streamed) == list(streamed) == ["p", "q"]
    with pytest.raises(TypeError, match="texts item 0 is a int"):
        list(TextCorpus.from_texts([3]))
    with pytest.raises(TypeError, match="not one string"):
        TextCorpus.from_texts("one document")


def test_files_are_read_lazily(tmp_path):
    # A bad byte far down the file is only met when reading gets there.
    (tmp_path / "big.txt").write_bytes(b"line\n" * 1000 + b"\xff\n")
    corpus = TextCorpus.from_files(tmp_path / "big.txt")
    assert next(iter(corpus)) == "line"
    with pytest.raises(CorpusError, match="line 1001"):
        list(corpus)


def test_undecodable_bytes_name_the_file_line_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\nbad \xff line\n")
    with pytest.raises(CorpusError, match=rf"{path}, line 2, byte offset 14: not valid utf-8"):
        TextCorpus.from_files(path).content_hash()
    with pytest.raises(CorpusError, match="texts item 1: byte offset 2 is not valid utf-8"):
        list(TextCorpus.from_texts([b"ok", b"no\xc3("]))


def test_empty_corpora_are_clear_errors(tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    empty = TextCorpus.from_files(tmp_path / "blank.txt")
    with pytest.raises(CorpusError, match=r"corpus files \[.*blank.txt'\] \(lines\) is empty"):
        empty.check_not_empty()
    with pytest.raises(CorpusError, match="is empty"):
        train_word_piece_vocabulary(empty, 100, cache_dir=tmp_path)
    with pytest.raises(CorpusError, match="is empty"):
        packed_dataset(empty, fixed_tokenizer(), sequence_length=16)
    with pytest.raises(CorpusError, match="texts is empty"):
        TextCorpus.from_texts([]).content_hash()
    with pytest.raises(CorpusError, match="No files given"):
        TextCorpus.from_files([])
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        TextCorpus.from_files(tmp_path / "nowhere.txt")


def test_content_hash_depends_on_documents_not_source(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    from_file = TextCorpus.from_files(tmp_path / "a.txt").content_hash()
    assert from_file == TextCorpus.from_texts(["one", "two"]).content_hash()
    assert from_file != TextCorpus.from_texts(["one two"]).content_hash()
    assert from_file != TextCorpus.from_files(tmp_path / "a.txt", mode="paragraphs").content_hash()


def test_packing_fills_sequences_with_cls_and_sep():
    corpus = TextCorpus.from_texts(["the cat sat", "a dog", "the mat"])
    batches = list(packed_dataset(corpus, fixed_tokenizer(), sequence_length=8, batch_size=4, shuffle_buffer=0))
    assert len(batches) == 1
    batch = {k: np.asarray(v) for k, v in batches[0].items()}
    the, cat, sat, a, dog, mat = 5, 6, 7, 9, 11, 10
    # The token stream "the cat sat [SEP] a dog [SEP] the mat [SEP]" cut into pieces of 6.
    np.testing.assert_array_equal(
        batch["token_ids"], [[CLS, the, cat, sat, SEP, a, dog, SEP], [CLS, SEP, the, mat, SEP, SEP, PAD, PAD]]
    )
    np.testing.assert_array_equal(batch["padding_mask"], [[1] * 8, [1] * 6 + [0] * 2])
    np.testing.assert_array_equal(batch["segment_ids"], np.zeros((2, 8)))
    assert all(v.dtype == np.int32 for v in batch.values())


def test_packing_streams_full_length_batches():
    corpus = TextCorpus.from_texts(sentences(200))
    data = packed_dataset(corpus, fixed_tokenizer(), sequence_length=16, batch_size=8, seed=0, documents_per_read=7)
    assert data.element_spec["token_ids"].shape.as_list() == [None, 16]
    masks = np.concatenate([np.asarray(batch["padding_mask"]) for batch in data])
    assert (masks.sum(1) == 16).sum() == len(masks) - 1  # only the last sequence of a pass is padded
    tokens = np.concatenate([np.asarray(batch["token_ids"]) for batch in data])
    assert (tokens[:, 0] == CLS).all() and UNK not in tokens


def test_sequence_length_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="sequence_length 7 is too small: it must be at least 8"):
        packed_dataset(TextCorpus.from_texts(["a"]), fixed_tokenizer(), sequence_length=7)
    no_cls = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=["[PAD]", "[UNK]", "a"], oov_token="[UNK]")
    with pytest.raises(ValueError, match=r"lacks \['\[CLS\]', '\[SEP\]'\]"):
        packed_dataset(TextCorpus.from_texts(["a"]), no_cls, sequence_length=8)


def test_bucketing_frames_each_document_and_pads_to_the_smallest_width():
    corpus = TextCorpus.from_texts(["the cat sat", "a dog", " ".join(WORDS * 2), "the mat", "red"])
    batches = bucketed_dataset(
        corpus, fixed_tokenizer(), sequence_length=16, batch_size=2, bucket_widths=(4, 8), shuffle_buffer=0
    )
    got = [{k: np.asarray(v).tolist() for k, v in batch.items()} for batch in batches]
    the, cat, sat, a, dog, mat, red = 5, 6, 7, 9, 11, 10, 15
    long_one = [CLS] + list(range(5, 5 + 14)) + [SEP]  # truncated to 16 tokens, [SEP] kept
    assert sorted(map(str, [b["token_ids"] for b in got])) == sorted(map(str, [
        [[CLS, a, dog, SEP], [CLS, the, mat, SEP]],  # a full batch of width 4
        [[CLS, red, SEP, PAD]],  # the width-4 bucket's remainder
        [[CLS, the, cat, sat, SEP, PAD, PAD, PAD]],
        [long_one],
    ]))
    for batch in got:
        np.testing.assert_array_equal(batch["padding_mask"], np.asarray(batch["token_ids"]) != PAD)
        assert not np.any(batch["segment_ids"])


def test_bucketing_streams_every_document_once_in_few_shapes():
    texts = sentences(300)
    corpus = TextCorpus.from_texts(texts)
    data = bucketed_dataset(corpus, fixed_tokenizer(), sequence_length=12, batch_size=8, seed=0, documents_per_read=7)
    batches = [{k: np.asarray(v) for k, v in batch.items()} for batch in data]
    assert {b["token_ids"].shape[1] for b in batches} == {12}  # the default widths: 16s up to the length
    assert len(batches) == -(-300 // 8)
    data = bucketed_dataset(corpus, fixed_tokenizer(), sequence_length=12, batch_size=8, bucket_widths=(6, 9), seed=0)
    batches = [{k: np.asarray(v) for k, v in batch.items()} for batch in data]
    assert {b["token_ids"].shape[1] for b in batches} == {6, 9, 12}
    assert all(len(b["token_ids"]) <= 8 for b in batches)
    lengths = sorted(int(length) for b in batches for length in b["padding_mask"].sum(1))
    assert lengths == sorted(len(text.split()) + 2 for text in texts)
    full = bucketed_dataset(corpus, fixed_tokenizer(), 12, batch_size=8, bucket_widths=(6, 9), drop_remainder=True)
    full = [np.asarray(batch["token_ids"]) for batch in full]
    per_width = np.bincount(lengths, minlength=13)
    assert len(full) == per_width[:7].sum() // 8 + per_width[7:10].sum() // 8 + per_width[10:].sum() // 8
    assert all(len(batch) == 8 for batch in full)


@pytest.mark.parametrize("cache", [False, True])
def test_bucketing_cache_reads_the_corpus_once(cache):
    reads = []
    corpus = TextCorpus.from_texts(lambda: reads.append(1) or sentences(40))
    data = bucketed_dataset(corpus, fixed_tokenizer(), sequence_length=12, batch_size=8, seed=0, cache=cache)
    reads.clear()  # building the pipeline checks the corpus is not empty
    passes = [sorted(map(str, np.concatenate([np.asarray(b["token_ids"]) for b in data]).tolist())) for _ in range(2)]
    assert passes[0] == passes[1]  # the same glosses each pass
    assert len(reads) == (1 if cache else 2)


def test_bucket_widths_out_of_range_are_a_clear_error():
    corpus = TextCorpus.from_texts(["a"])
    with pytest.raises(ValueError, match=r"bucket_widths must lie between 2 and sequence_length=16; got \(8, 32\)"):
        bucketed_dataset(corpus, fixed_tokenizer(), sequence_length=16, bucket_widths=(8, 32))
    with pytest.raises(ValueError, match="sequence_length 7 is too small"):
        bucketed_dataset(corpus, fixed_tokenizer(), sequence_length=7)


def test_vocabulary_training_and_its_disk_cache(tmp_path, monkeypatch):
    corpus = TextCorpus.from_texts(sentences(300))
    vocabulary = train_word_piece_vocabulary(corpus, 80, cache_dir=tmp_path)
    assert vocabulary[:5] == SPECIAL and len(vocabulary) <= 80
    assert set(WORDS) <= set(vocabulary)
    cached = list(tmp_path.glob("wordpiece-80-*.txt"))
    assert len(cached) == 1

    calls = []
    fake = lambda data, size, **kwargs: calls.append(size) or SPECIAL + [f"t{i}" for i in range(size - 5)]  # noqa: E731
    monkeypatch.setattr(keras_hub.tokenizers, "compute_word_piece_vocabulary", fake)
    assert train_word_piece_vocabulary(corpus, 80, cache_dir=tmp_path) == vocabulary  # read from the cache
    assert calls == []
    # Another size, corpus or option is another cache entry.
    train_word_piece_vocabulary(corpus, 90, cache_dir=tmp_path)
    train_word_piece_vocabulary(TextCorpus.from_texts(sentences(300, seed=1)), 80, cache_dir=tmp_path)
    train_word_piece_vocabulary(corpus, 80, lowercase=False, cache_dir=tmp_path)
    assert calls == [90, 80, 80] and len(list(tmp_path.glob("*.txt"))) == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path))
    fake = lambda data, size, **kwargs: SPECIAL + [f"t{i}" for i in range(size - 5)]  # noqa: E731
    monkeypatch.setattr(keras_hub.tokenizers, "compute_word_piece_vocabulary", fake)
    train_word_piece_vocabulary(TextCorpus.from_texts(["a b"]), 40)
    assert len(list((tmp_path / "vocabularies").glob("wordpiece-40-*.txt"))) == 1


def test_vocabulary_size_too_small_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"vocabulary_size 30 is too small: it must be at least 31 \(5 special"):
        train_word_piece_vocabulary(TextCorpus.from_texts(["a"]), 30, cache_dir=tmp_path)


# Whole-word masking needs a static length, which TensorFlow lacks for bucketed batches.
@pytest.mark.parametrize("pipeline, whole_words", [(packed_dataset, True), (bucketed_dataset, False)])
def test_trained_tokenizer_feeds_fit(tmp_path, pipeline, whole_words):
    corpus = TextCorpus.from_texts(sentences(120))
    tokenizer = train_word_piece_tokenizer(corpus, 60, cache_dir=tmp_path)
    vocabulary = tokenizer.get_vocabulary()
    assert UNK not in np.asarray(tokenizer("The cat sat on a mat"))  # lowercased like the vocabulary
    # Equal batches: a partial last batch would cost JAX a second compilation.
    widths = {"bucket_widths": (8, 12)} if pipeline is bucketed_dataset else {}  # batches of three widths
    data = pipeline(corpus, tokenizer, sequence_length=16, batch_size=8, seed=0, drop_remainder=True, **widths)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16,
    )
    mlm = MaskedLanguageModel.from_vocabulary(backbone, vocabulary, whole_word_masking=whole_words, seed=0)
    mlm.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = mlm.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0 <= history["masked_token_accuracy"][0] <= 1


def test_tfds_text_corpus_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        corpus = TextCorpus.from_tfds("imdb_reviews", split="train")
        documents = list(corpus)
        with pytest.raises(KeyError, match=r"no feature 'body'; its features: \['label', 'text'\]"):
            TextCorpus.from_tfds("imdb_reviews", split="train", text_key="body")
    assert 0 < len(documents) <= 6 and all(isinstance(d, str) and d for d in documents)


def test_tfds_that_cannot_load_offline_is_a_clear_error(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    real_load, calls = tfds.load, []

    def offline_load(name, **kwargs):
        calls.append(kwargs)
        assert not kwargs.get("download"), "the default must never download"
        return real_load(name, **kwargs)

    monkeypatch.setattr(tfds, "load", offline_load)
    with pytest.raises(DataNotFoundError, match=r"'imdb_reviews' \(split 'train'\) could not be loaded offline") as error:
        TextCorpus.from_tfds("imdb_reviews", data_dir=tmp_path)
    assert "tfds build imdb_reviews" in str(error.value) and str(tmp_path) in str(error.value)
    assert calls == [{"split": "train", "data_dir": tmp_path, "download": False}]
