import re
import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_pretrain.data import (
    CorpusError,
    DataNotFoundError,
    TextCorpus,
    bucketed_dataset,
    packed_dataset,
    text_corpus,
    train_word_piece_tokenizer,
    train_word_piece_vocabulary,
)
from keras_pretrain.data.text import batch_by_width
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
    with pytest.raises(ValueError, match="mode must be 'lines', 'paragraphs' or 'files'"):
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
    with pytest.raises(CorpusError, match=rf"{path}, line 2, byte offset 14: not valid utf-8 .*Re-encode it as utf-8 "
                                          r"\(e.g. iconv -f latin1 -t utf-8\), or pass encoding=\.\.\. from Python"):
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


@pytest.mark.parametrize("batch_multiple, sizes", [(1, {6: 16, 9: 10, 12: 8}), (4, {6: 16, 9: 8, 12: 8})])
def test_batching_by_tokens_gives_every_width_the_same_token_budget(batch_multiple, sizes):
    texts = sentences(300)
    data = bucketed_dataset(TextCorpus.from_texts(texts), fixed_tokenizer(), 12, batch_size=8, bucket_widths=(6, 9),
                            seed=0, drop_remainder=True, batch_by="tokens", batch_multiple=batch_multiple)
    batches = [np.asarray(batch["token_ids"]) for batch in data]
    # 8 x 12 = 96 token slots a batch: 96 // 6 = 16 sequences of width 6, 96 // 9 = 10 (8 in multiples of 4) of 9
    assert {batch.shape[1]: len(batch) for batch in batches} == sizes
    lengths = np.bincount([len(text.split()) + 2 for text in texts], minlength=13)
    full_batches = lengths[:7].sum() // sizes[6] + lengths[7:10].sum() // sizes[9] + lengths[10:].sum() // sizes[12]
    assert len(batches) == full_batches
    with pytest.raises(ValueError, match="batch_by must be 'sequences' or 'tokens'; got 'words'"):
        bucketed_dataset(TextCorpus.from_texts(texts), fixed_tokenizer(), 12, batch_by="words")
    with pytest.raises(ValueError, match="batch_size 6 must be a multiple of batch_multiple 4"):
        bucketed_dataset(TextCorpus.from_texts(texts), fixed_tokenizer(), 12, batch_size=6, batch_multiple=4)


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_batching_by_width_gives_tf_data_buckets_in_their_order(drop_remainder):
    rng = np.random.default_rng(0)
    documents = tf.data.Dataset.from_tensor_slices(
        tf.ragged.constant([rng.integers(0, 9, rng.integers(1, 21)) for _ in range(200)], dtype=tf.int32))
    widths, sizes = [4, 8, 12, 20], [5, 3, 3, 2]
    expected = documents.map(tf.identity).bucket_by_sequence_length(
        lambda document: tf.shape(document)[0], [width + 1 for width in widths], sizes + [1], padding_values=-1,
        pad_to_bucket_boundary=True, drop_remainder=drop_remainder)
    # Pools of 7 documents: part-filled buckets are carried over from pool to pool many times.
    got = batch_by_width(documents, widths, sizes, drop_remainder=drop_remainder, pool_size=7)
    expected, got = [b.numpy().tolist() for b in expected], [b.numpy().tolist() for b in got]
    assert len(expected) > 60 and got == expected


def test_batching_by_width_ends_with_part_filled_buckets_in_bucket_order():
    # The wide bucket's document arrives first; tf.data flushes its groups by key, so the narrow one comes first.
    documents = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2, 3, 4, 5], [1]], dtype=tf.int32))
    got = [b.numpy().tolist() for b in batch_by_width(documents, [3, 5], [2, 2])]
    assert got == [[[1, -1, -1]], [[1, 2, 3, 4, 5]]]
    assert list(batch_by_width(documents, [3, 5], [2, 2], drop_remainder=True)) == []
    with pytest.raises(ValueError, match=r"widths must increase .* got \[8, 4\] and \[5, 3\]"):
        batch_by_width(documents, [8, 4], [5, 3])
    with pytest.raises(ValueError, match="documents must be int32 token ids; got int64: cast them first"):
        batch_by_width(documents.map(lambda document: tf.cast(document, tf.int64)), [3, 5], [2, 2])


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


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")  # a 15-word corpus cannot fill 80 tokens
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


# Whole words on length buckets: TensorFlow traces their step with the width unknown.
@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
@pytest.mark.parametrize("pipeline, whole_words", [(packed_dataset, False), (bucketed_dataset, True)])
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
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
    with tfds.testing.mock_data(num_examples=6):
        corpus = TextCorpus.from_tfds("imdb_reviews", split="train")
        documents = list(corpus)
        with pytest.raises(KeyError, match=r"no feature 'body'; its features: \['label', 'text'\]"):
            TextCorpus.from_tfds("imdb_reviews", split="train", text_key="body")
    assert 0 < len(documents) <= 6 and all(isinstance(d, str) and d for d in documents)


def test_tfds_that_cannot_load_offline_is_a_clear_error(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
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


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directories_give_their_text_files_recursively_in_order(tmp_path):
    write(tmp_path / "corpus" / "b.txt", "bee\n")
    write(tmp_path / "corpus" / "a" / "deep" / "c.md", "sea\n")
    write(tmp_path / "corpus" / "a.rst", "ay\n")
    write(tmp_path / "corpus" / ".hidden.txt", "secret\n")
    write(tmp_path / "corpus" / ".git" / "notes.txt", "tool data\n")
    write(tmp_path / "corpus" / "picture.png", "not text\n")
    write(tmp_path / "corpus" / "data.JSONL", '{"text": "jay"}\n')  # extensions in any case
    corpus = TextCorpus.from_files(tmp_path / "corpus")
    assert list(corpus) == ["sea", "ay", "bee", "jay"]  # sorted paths: a/deep/c.md, a.rst, b.txt, data.JSONL
    # Directories, files and patterns mix; a file named twice is read once.
    both = TextCorpus.from_files([tmp_path / "corpus" / "b.txt", str(tmp_path / "corpus")])
    assert list(both) == ["bee", "sea", "ay", "jay"]


def test_globs_match_files_recursively_and_sorted(tmp_path):
    for name in ("x/2.txt", "x/1.txt", "x/sub/3.txt", "x/sub/4.md", "x/.5.txt"):
        write(tmp_path / name, name + "\n")
    assert list(TextCorpus.from_files(str(tmp_path / "x" / "*.txt"))) == ["x/1.txt", "x/2.txt"]
    assert list(TextCorpus.from_files(str(tmp_path / "x" / "**" / "*.txt"))) == ["x/1.txt", "x/2.txt", "x/sub/3.txt"]
    assert list(TextCorpus.from_files(str(tmp_path / "x" / "sub" / "[34].*"))) == ["x/sub/3.txt", "x/sub/4.md"]
    pattern = str(tmp_path / "x" / "*.csv")
    with pytest.raises(CorpusError, match=rf"^glob '{re.escape(pattern)}' matches no files: check the pattern"):
        TextCorpus.from_files([tmp_path / "x" / "1.txt", pattern])


def test_directory_without_text_files_and_missing_paths_are_clear_errors(tmp_path):
    write(tmp_path / "images" / "a.png", "png")
    write(tmp_path / "images" / ".b.txt", "hidden")
    with pytest.raises(CorpusError, match=r"images holds no text files \(extensions .txt .text .md .rst .jsonl .csv"):
        TextCorpus.from_files(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match=r"Corpus files not found: \['.*nowhere'\]"):
        TextCorpus.from_files([tmp_path / "images" / "a.png", tmp_path / "nowhere"])  # named files: any extension


def test_files_mode_makes_each_file_one_document(tmp_path):
    write(tmp_path / "a.txt", "  first line\nsecond line\n\n\nafter a gap  \n")
    write(tmp_path / "b.txt", "\n\n")
    write(tmp_path / "c.txt", "only")
    corpus = TextCorpus.from_files(tmp_path, mode="files")
    assert list(corpus) == ["first line second line after a gap", "only"]
    assert corpus.description == f"files {[str(tmp_path / n) for n in ('a.txt', 'b.txt', 'c.txt')]} (files)"


def test_description_names_three_files_and_a_count(tmp_path):
    for i in range(5):
        write(tmp_path / f"{i}.txt", "x")
    description = TextCorpus.from_files(tmp_path).description
    assert description == f"files ['{tmp_path}/0.txt', '{tmp_path}/1.txt', '{tmp_path}/2.txt', and 2 more] (lines)"


def test_tables_give_one_document_per_row_from_the_text_column(tmp_path):
    lines = ['{"id": 1, "body": "json one"}', "", '{"body": "  json two ", "extra": [1]}', '{"body": null}']
    write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
    write(tmp_path / "b.csv", 'id,body\n1,"csv, with a comma"\n2,"a quoted\nmulti-line field"\n3,\n\n4,"say ""hi"""\n')
    write(tmp_path / "c.tsv", "body\tid\ntsv, one\t1\n")
    write(tmp_path / "d.txt", "plain line one\nplain line two\n")
    corpus = TextCorpus.from_files(tmp_path, text_column="body")
    assert list(corpus) == [
        "json one", "json two", "csv, with a comma", "a quoted\nmulti-line field", 'say "hi"', "tsv, one",
        "plain line one", "plain line two",
    ]
    assert corpus.description.endswith("(lines; column 'body')")
    assert TextCorpus.from_files(tmp_path / "b.csv", text_column="body").description.endswith("(column 'body')")


def test_table_errors_name_the_file_its_columns_and_the_line(tmp_path):
    write(tmp_path / "a.csv", "id,text\n1,hello\n")
    with pytest.raises(CorpusError, match=r"a.csv has no column 'body'; its columns: id, text. Pass text_column="):
        TextCorpus.from_files(tmp_path / "a.csv", text_column="body")  # checked up front, before any pass
    write(tmp_path / "b.jsonl", '{"text": "fine"}\n{"text": "broken"\n')
    corpus = TextCorpus.from_files(tmp_path / "b.jsonl")
    with pytest.raises(CorpusError, match=r"b.jsonl, line 2: not JSON \(Expecting ',' delimiter"):
        list(corpus)
    write(tmp_path / "c.jsonl", '{"text": "fine"}\n\n{"body": "x"}\n')
    with pytest.raises(CorpusError, match=r"c.jsonl, line 3 has no field 'text'; its fields: body"):
        list(TextCorpus.from_files(tmp_path / "c.jsonl"))
    write(tmp_path / "d.jsonl", '["text"]\n')
    with pytest.raises(CorpusError, match=r"d.jsonl, line 1: a JSON list, not an object"):
        TextCorpus.from_files(tmp_path / "d.jsonl")
    write(tmp_path / "e.csv", 'text\nfine\n"never closed\nmore\n')
    with pytest.raises(CorpusError, match=r"e.csv, line 3: not valid CSV \(unexpected end of data\)"):
        list(TextCorpus.from_files(tmp_path / "e.csv"))
    (tmp_path / "f.csv").write_bytes(b"text\nok\n\"bad \xff\"\n")
    with pytest.raises(CorpusError, match=r"f.csv, line 3, byte offset 13: not valid utf-8"):
        list(TextCorpus.from_files(tmp_path / "f.csv"))


def test_spreadsheet_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    (tmp_path / "a.csv").write_bytes("\ufefftext,id\nhello,1\n".encode("utf-8"))
    assert list(TextCorpus.from_files(tmp_path / "a.csv")) == ["hello"]


def test_trained_tokenizer_is_a_bert_tokenizer_for_keras_hub_preprocessors_and_tasks(tmp_path):
    texts = sentences(120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny corpus: the vocabulary is smaller than asked
        tokenizer = train_word_piece_tokenizer(TextCorpus.from_texts(texts), 60, cache_dir=tmp_path)
    assert isinstance(tokenizer, keras_hub.models.BertTokenizer)
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id) == (
        CLS, SEP, PAD, MASK,
    )
    assert not tokenizer.strip_accents and tokenizer.lowercase

    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=12)
    features = {k: keras.ops.convert_to_numpy(v) for k, v in preprocessor(["The cat sat", "a dog"]).items()}
    assert features["token_ids"].shape == (2, 12) and (features["token_ids"][:, 0] == CLS).all()
    assert features["token_ids"][0, 4] == SEP and UNK not in features["token_ids"]
    masked, _, _ = keras_hub.models.BertMaskedLMPreprocessor(tokenizer, sequence_length=12)(["the cat sat on a mat"])
    assert keras.ops.convert_to_numpy(masked["token_ids"]).shape == (1, 12)

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=12,
    )
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    # shuffle=False: keras-hub turns raw strings into a tf.data pipeline, which Keras would warn cannot shuffle.
    history = classifier.fit(texts[:8], np.arange(8) % 2, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert keras.ops.convert_to_numpy(classifier.predict(["a red house"], verbose=0)).shape == (1, 2)


def test_vocabulary_smaller_than_asked_warns_also_from_the_cache(tmp_path, monkeypatch):
    corpus = TextCorpus.from_texts(sentences(100))
    with pytest.warns(UserWarning, match=r"^Asked for a vocabulary of 200 tokens; the corpus texts supports only") as w:
        vocabulary = train_word_piece_vocabulary(corpus, 200, cache_dir=tmp_path)
    size = len(vocabulary)
    assert f"only {size}: {size} tokens are used (ask for at most {size}, or give more text)." in str(w[0].message)
    with pytest.warns(UserWarning, match="Asked for a vocabulary of 200 tokens"):
        assert train_word_piece_vocabulary(corpus, 200, cache_dir=tmp_path) == vocabulary  # a cache hit
    # 90% or more of the size asked for is fine.
    fake = lambda data, size, **kwargs: SPECIAL + [f"t{i}" for i in range(int(size * 0.9) - 5)]  # noqa: E731
    monkeypatch.setattr(keras_hub.tokenizers, "compute_word_piece_vocabulary", fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(train_word_piece_vocabulary(corpus, 100, cache_dir=tmp_path)) == 90


def test_text_corpus_dispatches_tfds_specs_and_paths(tmp_path, monkeypatch):
    write(tmp_path / "books" / "a.txt", "one\ntwo\n\nthree\n")
    assert list(text_corpus(str(tmp_path / "books"), mode="paragraphs")) == ["one two", "three"]
    corpus = TextCorpus.from_texts(["x"])
    assert text_corpus(corpus) is corpus
    calls = []
    monkeypatch.setattr(TextCorpus, "from_tfds", classmethod(lambda cls, name, **kwargs: calls.append((name, kwargs))))
    text_corpus("tfds:imdb_reviews", data_dir="/data")
    text_corpus("tfds:wikipedia/20230601.en:train[:1%]", text_column="body", download=False)
    text_corpus("tfds:imdb_reviews/plain_text:1.0.0:unsupervised")
    assert calls == [
        ("imdb_reviews", {"split": "train", "text_key": "text", "data_dir": "/data", "download": True}),
        ("wikipedia/20230601.en", {"split": "train[:1%]", "text_key": "body", "data_dir": None, "download": False}),
        (
            "imdb_reviews/plain_text:1.0.0",
            {"split": "unsupervised", "text_key": "text", "data_dir": None, "download": True},
        ),
    ]
    with pytest.raises(ValueError, match=r"'tfds:' is not 'tfds:NAME' or 'tfds:NAME:SPLIT'"):
        text_corpus("tfds:")


def test_each_process_reads_its_own_files_or_every_nth_document(tmp_path):
    for i in range(4):
        (tmp_path / f"part{i}.txt").write_text(f"doc {i} a\ndoc {i} b\n")
    corpus = TextCorpus.from_files(tmp_path)
    shares = [list(corpus.shard(index, 2)) for index in range(2)]
    assert shares == [["doc 0 a", "doc 0 b", "doc 2 a", "doc 2 b"], ["doc 1 a", "doc 1 b", "doc 3 a", "doc 3 b"]]
    assert "share 2 of 2" in corpus.shard(1, 2).description and corpus.shard(0, 1) is corpus
    # Fewer files than processes: every process still gets documents, every n-th one.
    single = TextCorpus.from_files(tmp_path / "part0.txt")
    assert [list(single.shard(index, 2)) for index in range(2)] == [["doc 0 a"], ["doc 0 b"]]
    assert list(TextCorpus.from_texts(["x", "y", "z"]).shard(1, 2)) == ["y"]
