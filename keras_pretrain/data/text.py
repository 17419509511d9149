"""Text corpora, WordPiece vocabularies trained on them, and packed or bucketed `tf.data` pipelines for MLM.

A `TextCorpus` is a re-iterable stream of documents (Python strings) from
local files, a Python iterable or a TensorFlow Datasets text data set. Files
are read lazily line by line, so corpora larger than memory work end to end:
hashing, vocabulary training, `packed_dataset` and `bucketed_dataset` all stream.
"""

import hashlib
import json
import os
from pathlib import Path

import keras_hub
import tensorflow as tf

from keras_pretrain.data.fashion_mnist import DataNotFoundError

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
# Fewer learned tokens than this cannot even hold a Latin alphabet's letters.
MIN_LEARNED_TOKENS = 26
# [CLS] + [SEP] + a handful of tokens: anything shorter is all overhead.
MIN_SEQUENCE_LENGTH = 8


class CorpusError(ValueError):
    """A corpus that cannot be used: empty, or with bytes that do not decode."""


class TextCorpus:
    """A re-iterable stream of non-empty documents (stripped strings).

    Build one with `from_files`, `from_texts` or `from_tfds`; iterate it as
    often as needed (each pass reads the source again, lazily).

    Example:
    >>> corpus = TextCorpus.from_files(["wiki.txt"], mode="paragraphs")
    >>> next(iter(corpus))
    'First paragraph, its lines joined with spaces.'
    >>> corpus = TextCorpus.from_texts(["one document", "another one"])
    """

    def __init__(self, documents, description):
        """`documents`: a callable returning a fresh iterator of strings on each call."""
        self._documents = documents
        self.description = description

    @classmethod
    def from_files(cls, paths, mode="lines", encoding="utf-8"):
        """Documents from local text files, read line by line.

        `mode="lines"`: one document per non-blank line. `mode="paragraphs"`:
        documents are runs of non-blank lines separated by blank lines, their
        lines joined with a space. Bytes that do not decode raise `CorpusError`
        naming the file, line and byte offset.
        """
        if mode not in ("lines", "paragraphs"):
            raise ValueError(f"mode must be 'lines' or 'paragraphs'; got {mode!r}.")
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if not paths:
            raise CorpusError("No files given: the corpus is empty.")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"Corpus files not found: {missing}.")

        def documents():
            for path in paths:
                yield from _read_documents(path, mode, encoding)

        return cls(documents, f"files {[str(p) for p in paths]} ({mode})")

    @classmethod
    def from_texts(cls, texts, name="texts"):
        """Documents from Python strings: a list, or a callable returning a fresh iterable.

        A one-shot iterator (a generator) is read into a list once, since the
        corpus is iterated more than once; pass a callable to stream instead.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("from_texts takes a list of documents, not one string: wrap it in a list.")
        if callable(texts):
            source = texts
        else:
            if iter(texts) is texts:
                texts = list(texts)
            source = lambda: texts  # noqa: E731

        def documents():
            for i, text in enumerate(source()):
                if isinstance(text, bytes):
                    text = _decode(text, f"{name} item {i}", "utf-8")
                if not isinstance(text, str):
                    raise TypeError(f"{name} item {i} is a {type(text).__name__}, not a string.")
                if text.strip():
                    yield text.strip()

        return cls(documents, name)

    @classmethod
    def from_tfds(cls, name, split="train", text_key="text", data_dir=None, download=False):
        """Documents from a TensorFlow Datasets text data set, e.g. `imdb_reviews` or `wikipedia/20230601.en`.

        With `download=False` (the default) nothing is fetched: the data set
        must already be prepared in `data_dir` (or TFDS's default directory),
        and a `DataNotFoundError` says how to prepare it otherwise.
        """
        try:
            import tensorflow_datasets as tfds
        except ImportError as error:
            raise ImportError("TFDS corpora need `pip install tensorflow-datasets`.") from error
        try:
            dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
        except Exception as error:  # TFDS raises AssertionError, DatasetNotFoundError, network errors...
            raise DataNotFoundError(
                f"TFDS data set {name!r} (split {split!r}) could not be loaded "
                f"{'' if download else 'offline '}from {data_dir or 'the default TFDS directory'}: "
                f"{type(error).__name__}: {error}\nFix: prepare it once with network access "
                f"(`tfds build {name}`, or tfds.load(..., download=True)) and pass its data_dir, "
                "or use local text files with TextCorpus.from_files."
            ) from error
        if not isinstance(dataset.element_spec, dict) or text_key not in dataset.element_spec:
            keys = sorted(dataset.element_spec) if isinstance(dataset.element_spec, dict) else dataset.element_spec
            raise KeyError(f"TFDS data set {name!r} has no feature {text_key!r}; its features: {keys}.")
        description = f"tfds {name} ({split})"

        def documents():
            for i, example in enumerate(tfds.as_numpy(dataset.map(lambda example: example[text_key]))):
                text = _decode(example, f"{description} example {i}", "utf-8").strip()
                if text:
                    yield text

        return cls(documents, description)

    def __iter__(self):
        return iter(self._documents())

    def check_not_empty(self):
        """Raise `CorpusError` unless the corpus holds at least one document (reads only up to the first)."""
        if next(iter(self), None) is None:
            raise CorpusError(f"The corpus {self.description} is empty: it holds no non-blank text.")

    def content_hash(self):
        """SHA-256 of the documents (one full streaming pass); raises `CorpusError` if there are none."""
        digest, count = hashlib.sha256(), 0
        for text in self:
            data = text.encode("utf-8")
            # Length-prefixed, so document boundaries are part of the hash.
            digest.update(len(data).to_bytes(8, "little") + data)
            count += 1
        if not count:
            raise CorpusError(f"The corpus {self.description} is empty: it holds no non-blank text.")
        return digest.hexdigest()

    def dataset(self):
        """The documents as a streaming `tf.data.Dataset` of scalar strings."""
        return tf.data.Dataset.from_generator(lambda: iter(self), output_signature=tf.TensorSpec((), tf.string))


def _decode(data, where, encoding):
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{where}: byte offset {error.start} is not valid {encoding} ({error.reason}, byte "
            f"{data[error.start:error.start + 1]!r}). Re-encode the text as {encoding} or pass the right encoding."
        ) from error


def _read_documents(path, mode, encoding):
    paragraph = []
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding).strip()
            except UnicodeDecodeError as error:
                raise CorpusError(
                    f"{path}, line {number}, byte offset {offset + error.start}: not valid {encoding} "
                    f"({error.reason}, byte {raw[error.start:error.start + 1]!r}). Re-encode the file as "
                    f"{encoding} or pass the right encoding."
                ) from error
            offset += len(raw)
            if mode == "lines":
                if line:
                    yield line
            elif line:
                paragraph.append(line)
            elif paragraph:
                yield " ".join(paragraph)
                paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def default_cache_dir():
    """Where trained vocabularies are cached: `$KERAS_PRETRAIN_CACHE/vocabularies` or `~/.cache/keras_pretrain/...`."""
    root = os.environ.get("KERAS_PRETRAIN_CACHE", Path.home() / ".cache" / "keras_pretrain")
    return Path(root) / "vocabularies"


def train_word_piece_vocabulary(
    corpus, vocabulary_size, lowercase=True, strip_accents=False, special_tokens=SPECIAL_TOKENS, cache_dir=None
):
    """Train a WordPiece vocabulary on `corpus` with keras-hub, cached on disk.

    The cache file's name comes from a hash of the corpus content, the
    vocabulary size, the options and the keras-hub version; a second call with
    the same inputs reads the file instead of training. The vocabulary starts
    with `special_tokens` and may be shorter than `vocabulary_size` when the
    corpus is small.

    Example:
    >>> vocabulary = train_word_piece_vocabulary(corpus, 8192, cache_dir="cache/")
    >>> vocabulary[:5]
    ['[PAD]', '[CLS]', '[SEP]', '[UNK]', '[MASK]']
    """
    minimum = len(special_tokens) + MIN_LEARNED_TOKENS
    if vocabulary_size < minimum:
        raise ValueError(
            f"vocabulary_size {vocabulary_size} is too small: it must be at least {minimum} "
            f"({len(special_tokens)} special tokens + {MIN_LEARNED_TOKENS} learned ones)."
        )
    options = {
        "vocabulary_size": vocabulary_size,
        "lowercase": lowercase,
        "strip_accents": strip_accents,
        "special_tokens": list(special_tokens),
        "keras_hub": keras_hub.__version__,
    }
    # The hashing pass also checks decoding and emptiness before TensorFlow sees the text.
    key = hashlib.sha256((corpus.content_hash() + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"wordpiece-{vocabulary_size}-{key[:20]}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        corpus.dataset(),
        vocabulary_size,
        lowercase=lowercase,
        strip_accents=strip_accents,
        reserved_tokens=list(special_tokens),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash never leaves a truncated vocabulary to be reused.
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text("".join(token + "\n" for token in vocabulary), encoding="utf-8")
    partial.replace(path)
    return vocabulary


def train_word_piece_tokenizer(corpus, vocabulary_size, lowercase=True, strip_accents=False, cache_dir=None):
    """A `keras_hub.tokenizers.WordPieceTokenizer` whose vocabulary is trained on `corpus` (and cached).

    Example:
    >>> tokenizer = train_word_piece_tokenizer(TextCorpus.from_files("corpus.txt"), 8192)
    >>> tokenizer(["the cat sat", "on the mat"])  # a ragged int32 batch of word-piece ids
    """
    vocabulary = train_word_piece_vocabulary(
        corpus, vocabulary_size, lowercase=lowercase, strip_accents=strip_accents, cache_dir=cache_dir
    )
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents, oov_token="[UNK]"
    )


def _framing_token_ids(corpus, tokenizer, sequence_length):
    """Check what framing sequences as `[CLS] ... [SEP]` needs; return the ids of [CLS], [SEP] and [PAD]."""
    if sequence_length < MIN_SEQUENCE_LENGTH:
        raise ValueError(
            f"sequence_length {sequence_length} is too small: it must be at least {MIN_SEQUENCE_LENGTH} "
            "([CLS] and [SEP] take two positions)."
        )
    index = {token: i for i, token in enumerate(tokenizer.get_vocabulary())}
    missing = [token for token in ("[CLS]", "[SEP]", "[PAD]") if token not in index]
    if missing:
        raise ValueError(f"The tokenizer's vocabulary lacks {missing}, which framing sequences as [CLS] ... [SEP] needs.")
    corpus.check_not_empty()
    return index["[CLS]"], index["[SEP]"], index["[PAD]"]


def packed_dataset(
    corpus,
    tokenizer,
    sequence_length=128,
    batch_size=32,
    shuffle_buffer=1024,
    seed=None,
    drop_remainder=False,
    documents_per_read=256,
):
    """A streaming `tf.data` pipeline of packed sequences for `MaskedLanguageModel.fit`.

    Documents are tokenized, each followed by `[SEP]`, concatenated, and cut
    into pieces of `sequence_length - 2` tokens, each framed as
    `[CLS] piece [SEP]`: every sequence is full except the last one of a pass,
    which is padded. Batches are dicts of int32 `(batch, sequence_length)`
    `token_ids`, `padding_mask` and `segment_ids` (all zeros). Sequences are
    shuffled within a `shuffle_buffer` (0 to keep corpus order). Pass
    `drop_remainder=True` for equal batches: data-parallel training needs
    them, and on JAX a partial last batch costs a second compilation.

    Example:
    >>> data = packed_dataset(corpus, tokenizer, sequence_length=64, batch_size=16)
    >>> mlm.fit(data, epochs=3)
    """
    cls_id, sep_id, pad_id = _framing_token_ids(corpus, tokenizer, sequence_length)
    piece_length = sequence_length - 2

    def tokenize(texts):
        tokens = tf.cast(tokenizer(texts), tf.int32)
        separators = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(texts)[0], 1], sep_id))
        return tf.concat([tokens, separators], axis=1).flat_values

    def frame(piece):
        length = tf.shape(piece)[0] + 2
        token_ids = tf.concat([[cls_id], piece, [sep_id]], axis=0)
        token_ids = tf.pad(token_ids, [[0, sequence_length - length]], constant_values=pad_id)
        return {
            "token_ids": tf.ensure_shape(token_ids, (sequence_length,)),
            "padding_mask": tf.sequence_mask(length, sequence_length, dtype=tf.int32),
            "segment_ids": tf.zeros((sequence_length,), tf.int32),
        }

    # unbatch + batch turns the token stream into fixed-length pieces without holding the corpus.
    sequences = corpus.dataset().batch(documents_per_read).map(tokenize).unbatch().batch(piece_length).map(frame)
    if shuffle_buffer:
        sequences = sequences.shuffle(shuffle_buffer, seed=seed)
    return sequences.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def bucketed_dataset(
    corpus,
    tokenizer,
    sequence_length=128,
    batch_size=32,
    bucket_widths=None,
    shuffle_buffer=1024,
    seed=None,
    drop_remainder=False,
    documents_per_read=256,
    cache=False,
):
    """A streaming `tf.data` pipeline of one document per sequence, batched by length, for `MaskedLanguageModel.fit`.

    For corpora of short, unrelated documents (definitions, titles, queries),
    where packing would make the model attend across documents and a
    downstream task sees one document at a time. Each document becomes
    `[CLS] tokens [SEP]`, truncated to `sequence_length`; batches hold
    documents of similar length, padded to the smallest of `bucket_widths`
    (default: multiples of 16; `sequence_length` is always added) that fits the longest,
    so padding stays small and there are few batch shapes (JAX compiles once
    per shape). Batches are dicts of int32 `token_ids`, `padding_mask` and
    `segment_ids`, as from `packed_dataset`. Documents are shuffled within a
    `shuffle_buffer` (0 keeps corpus order) before bucketing.
    `drop_remainder=True` drops each bucket's last partial batch. With
    `cache=True` the tokenized documents stay in memory after the first pass,
    so later passes (epochs) skip tokenization; for corpora that fit.

    Example:
    >>> data = bucketed_dataset(corpus, tokenizer, sequence_length=64, batch_size=32, bucket_widths=(16, 32, 64))
    >>> mlm.fit(data, epochs=3)
    """
    cls_id, sep_id, pad_id = _framing_token_ids(corpus, tokenizer, sequence_length)
    widths = range(16, sequence_length, 16) if bucket_widths is None else bucket_widths
    widths = sorted({int(width) for width in widths} | {sequence_length})
    if widths[0] < 2 or widths[-1] > sequence_length:
        raise ValueError(f"bucket_widths must lie between 2 and sequence_length={sequence_length}; got {bucket_widths}.")

    def tokenize(texts):
        return tf.cast(tokenizer(texts), tf.int32)[:, : sequence_length - 2]

    def frame(tokens):
        token_ids = tf.concat([[cls_id], tokens, [sep_id]], axis=0)
        return {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids), "segment_ids": tf.zeros_like(token_ids)}

    documents = corpus.dataset().batch(documents_per_read).map(tokenize).unbatch().map(frame)
    if cache:
        documents = documents.cache()
    if shuffle_buffer:
        documents = documents.shuffle(shuffle_buffer, seed=seed)
    # Boundaries are exclusive and pad_to_bucket_boundary pads to a boundary minus one; no
    # document is longer than the last width, so the bucket past it stays empty.
    batches = documents.bucket_by_sequence_length(
        lambda document: tf.shape(document["token_ids"])[0],
        bucket_boundaries=[width + 1 for width in widths],
        bucket_batch_sizes=[batch_size] * (len(widths) + 1),
        padding_values={"token_ids": pad_id, "padding_mask": 0, "segment_ids": 0},
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )
    return batches.prefetch(tf.data.AUTOTUNE)
