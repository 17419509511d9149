"""Text corpora, WordPiece vocabularies trained on them, and packed or bucketed `tf.data` pipelines for MLM.

A `TextCorpus` is a re-iterable stream of documents (Python strings) from
local files (text, JSON Lines, CSV or TSV; named one by one, as directories
or as glob patterns), a Python iterable or a TensorFlow Datasets text data
set. Files are read lazily line by line, so corpora larger than memory work
end to end: hashing, vocabulary training, `packed_dataset` and
`bucketed_dataset` all stream.
"""

import csv
import glob
import hashlib
import itertools
import json
import os
import warnings
from pathlib import Path

import keras_hub
import tensorflow as tf

from keras_pretrain.data.tfds import load_tfds, parse_tfds_spec

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
# Fewer learned tokens than this cannot even hold a Latin alphabet's letters.
MIN_LEARNED_TOKENS = 26
# [CLS] + [SEP] + a handful of tokens: anything shorter is all overhead.
MIN_SEQUENCE_LENGTH = 8
# Files a directory contributes to a corpus; other files (images, archives, caches) are skipped.
TEXT_EXTENSIONS = (".txt", ".text", ".md", ".rst", ".jsonl", ".csv", ".tsv")
# Files read as tables (one document per row, in a named column) rather than as running text.
TABLE_EXTENSIONS = (".jsonl", ".csv", ".tsv")
MODES = ("lines", "paragraphs", "files")
BATCH_BY = ("sequences", "tokens")  # what `bucketed_dataset` keeps constant from batch to batch
# A learned vocabulary below this share of the size asked for means the corpus is too small for it.
VOCABULARY_SHORTFALL = 0.9
# A TFDS name may carry a version after a colon (imdb_reviews:1.0.0); a split follows the next colon.


class CorpusError(ValueError):
    """A corpus that cannot be used: empty, or with bytes that do not decode.

    Example:
    >>> TextCorpus.from_texts(["", "  "]).check_not_empty()
    Traceback (most recent call last):
    CorpusError: The corpus texts is empty: it holds no non-blank text.
    """


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

    def __init__(self, documents, description, files=None, read=None):
        """`documents`: a callable returning a fresh iterator of strings on each call. A corpus of files also
        takes `files` and `read(some_files)` (their documents), so that `shard` can split it by file."""
        self._documents = documents
        self.description = description
        self._files = files
        self._read = read

    def shard(self, index, count):
        """Process `index` of `count`'s share: every `count`-th file from `index` (so each process reads only its
        own files) when there are at least `count` files, else every `count`-th document.

        Example:
        >>> mine = TextCorpus.from_files("corpus/*.txt").shard(process_id, num_processes)
        """
        if count == 1:
            return self
        where = f"{self.description} (share {index + 1} of {count})"
        if self._files is not None and len(self._files) >= count:
            mine = self._files[index::count]
            return TextCorpus(lambda: self._read(mine), where, mine, self._read)
        return TextCorpus(lambda: itertools.islice(self._documents(), index, None, count), where)

    @classmethod
    def from_files(cls, paths, mode="lines", encoding="utf-8", text_column="text"):
        """Documents from local files, directories and glob patterns, read lazily line by line.

        `paths` is one path or a list. A directory contributes every file under
        it (recursively, sorted, hidden files and folders skipped) whose
        extension is one of `TEXT_EXTENSIONS`; a pattern with `*`, `?` or `[`
        contributes the files it matches (sorted; `**` crosses folders). A file
        named twice is read once.

        How a file becomes documents depends on its extension. `.jsonl`: one
        JSON object per line, the document is its field `text_column`.
        `.csv` / `.tsv`: a header row, then one document per row in column
        `text_column` (quoted fields may span lines). Any other file is running
        text, split by `mode`: `"lines"`, one document per non-blank line;
        `"paragraphs"`, runs of non-blank lines separated by blank lines, their
        lines joined with a space; `"files"`, the whole file as one document,
        its lines joined with a space. Bytes that do not decode raise
        `CorpusError` naming the file, line and byte offset.

        Example:
        >>> corpus = TextCorpus.from_files(["books/", "news/**/*.jsonl"], mode="paragraphs", text_column="body")
        >>> corpus.description
        "files ['books/a.txt', 'books/b.md', 'news/2024/01.jsonl', and 9 more] (paragraphs; column 'body')"
        """
        if mode not in MODES:
            raise ValueError(f"mode must be 'lines', 'paragraphs' or 'files'; got {mode!r}.")
        files = resolve_files(paths)
        # Tables' headers are checked now, so a wrong text_column fails here, not deep in a training run.
        for path in files:
            if path.suffix.lower() in TABLE_EXTENSIONS:
                check_columns(path, table_columns(path, encoding), {"text_column": text_column})

        kinds = []
        if any(path.suffix.lower() not in TABLE_EXTENSIONS for path in files):
            kinds.append(mode)
        if any(path.suffix.lower() in TABLE_EXTENSIONS for path in files):
            kinds.append(f"column {text_column!r}")
        def read(some):
            for path in some:
                yield from _file_documents(path, mode, encoding, text_column)

        return cls(lambda: read(files), f"files {describe_files(files)} ({'; '.join(kinds)})", files, read)

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
        import tensorflow_datasets as tfds

        dataset = load_tfds(name, split, data_dir, download, instead="local text files (TextCorpus.from_files)")
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


def text_corpus(spec, mode="lines", text_column="text", data_dir=None, download=True):
    """A `TextCorpus` from a command-line style `spec`: `"tfds:NAME[:SPLIT]"`, or files, directories and globs.

    A TFDS spec reads feature `text_column` (with `data_dir` and
    `download`); `"wordnet"` is every WordNet gloss (from `data_dir` or the
    usual places); anything else goes to `TextCorpus.from_files` with `mode`
    and `text_column`; a `TextCorpus` is returned as it is.

    Example:
    >>> text_corpus("tfds:imdb_reviews:unsupervised").description
    'tfds imdb_reviews (unsupervised)'
    >>> corpus = text_corpus("books/**/*.txt", mode="paragraphs")
    """
    if isinstance(spec, TextCorpus):
        return spec
    if spec == "wordnet":
        from keras_pretrain.data.wordnet import gloss_corpus

        return gloss_corpus(data_dir)
    tfds_spec = parse_tfds_spec(spec)
    if tfds_spec:
        name, split = tfds_spec
        return TextCorpus.from_tfds(name, split=split, text_key=text_column, data_dir=data_dir, download=download)
    return TextCorpus.from_files(spec, mode=mode, text_column=text_column)


_REENCODE = "Re-encode it as {encoding} (e.g. iconv -f latin1 -t {encoding}), or pass encoding=... from Python."


def _decode(data, where, encoding):
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{where}: byte offset {error.start} is not valid {encoding} ({error.reason}, byte "
            f"{data[error.start:error.start + 1]!r}). {_REENCODE.format(encoding=encoding)}"
        ) from error


def resolve_files(paths, extensions=TEXT_EXTENSIONS):
    """The files that `paths` (one path or a list of files, directories and glob patterns) name, in order.

    Directories contribute their files with one of `extensions` (recursively,
    sorted, hidden names skipped); glob patterns the files they match. Raises
    `FileNotFoundError` for missing paths and `CorpusError` for a pattern
    matching nothing or a directory without such files.

    Example:
    >>> resolve_files(["notes.txt", "wiki/", "logs/**/*.jsonl"])
    [PosixPath('notes.txt'), PosixPath('wiki/a.txt'), PosixPath('wiki/sub/b.md'), PosixPath('logs/2024/x.jsonl')]
    """
    specs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not specs:
        raise CorpusError("No files given: the corpus is empty.")
    files, missing = [], []
    for spec in specs:
        text, path = os.fspath(spec), Path(spec)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = _files_under(path, extensions)
            if not found:
                raise CorpusError(
                    f"Directory {path} holds no text files (extensions {' '.join(extensions)}): "
                    "put the text in such files, or name the files or a glob pattern instead."
                )
            files.extend(found)
        elif any(char in text for char in "*?["):
            # Only files: a pattern names the files it wants (`dir/**/*.txt`); pass a directory to take all its text.
            matches = sorted(Path(match) for match in glob.glob(text, recursive=True) if os.path.isfile(match))
            if not matches:
                raise CorpusError(f"glob {text!r} matches no files: check the pattern.")
            files.extend(matches)
        else:
            missing.append(text)
    if missing:
        raise FileNotFoundError(f"Corpus files not found: {missing}: check the paths (files, directories or globs).")
    seen, unique = set(), []
    for path in files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _files_under(directory, extensions):
    found = []
    for root, folders, names in os.walk(directory):
        # Hidden folders (.git, .ipynb_checkpoints, ...) hold tool data, not the corpus.
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [
            Path(root) / name
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions
        ]
    return sorted(found)


def describe_files(files):
    """`files` in one short line: the first three and how many more, so errors naming a corpus stay readable."""
    names = [str(path) for path in files]
    if len(names) <= 3:
        return repr(names)
    return repr(names[:3])[:-1] + f", and {len(names) - 3} more]"


def _decoded_lines(path, encoding):
    """`(line number, line)` for each line of `path`, line endings kept; undecodable bytes raise `CorpusError`."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise CorpusError(
                    f"{path}, line {number}, byte offset {offset + error.start}: not valid {encoding} "
                    f"({error.reason}, byte {raw[error.start:error.start + 1]!r}). "
                    + _REENCODE.format(encoding=encoding)
                ) from error
            offset += len(raw)
            # Spreadsheet exports often start with a byte-order mark, which would stick to the first column's name.
            yield number, (line[1:] if number == 1 and line.startswith("\ufeff") else line)


def _read_documents(path, mode, encoding):
    paragraph = []
    for _, line in _decoded_lines(path, encoding):
        line = line.strip()
        if mode == "lines":
            if line:
                yield line
        elif line:
            paragraph.append(line)
        elif paragraph and mode == "paragraphs":
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def _file_documents(path, mode, encoding, text_column):
    if path.suffix.lower() not in TABLE_EXTENSIONS:
        yield from _read_documents(path, mode, encoding)
        return
    for _, (text,) in table_rows(path, encoding, {"text_column": text_column}):
        if text.strip():
            yield text.strip()


def table_columns(path, encoding="utf-8"):
    """The column names of a `.csv` / `.tsv` table (its header row) or `.jsonl` file (its first object's fields).

    `None` for a file without any (empty). Reads only up to the header or first object.

    Example:
    >>> table_columns("reviews.csv")
    ['id', 'text', 'label']
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        for number, line in _decoded_lines(path, encoding):
            if line.strip():
                return list(_json_object(path, number, line))
        return None
    return next(_csv_reader(path, encoding), (None, None))[1]


def check_columns(path, columns, wanted):
    """Raise `CorpusError` unless every column in `wanted` (`{option name: column}`) is among `columns`.

    Example:
    >>> check_columns("reviews.csv", ["id", "body"], {"text_column": "text"})
    Traceback (most recent call last):
    CorpusError: reviews.csv has no column 'text'; its columns: id, body. Pass text_column=... (--text-column) ...
    """
    for option, column in wanted.items():
        if columns is not None and column not in columns:
            separator = next((s for s in ";|\t" if s in str(columns[0])), None) if len(columns) == 1 else None
            fix = (f"Its header reads as one column: separate the columns with commas (tabs in a .tsv), not "
                   f"{separator!r}." if separator else
                   f"Pass {option}=... (--{option.replace('_', '-')} on the command line) naming the right one.")
            raise CorpusError(
                f"{path} has no column {column!r}; its columns: {', '.join(map(str, columns)) or '(none)'}. {fix}"
            )


def table_rows(path, encoding, columns):
    """`(line number, values)` for each row of a `.csv`, `.tsv` or `.jsonl` file: the values of `columns`, as strings.

    `columns` maps the option that chose each column to the column
    (`{"text_column": "body"}`), so errors say what to pass. Streams the
    file. A missing value reads as `""`; a JSONL line that is not a JSON
    object or lacks a field raises `CorpusError` naming file and line.

    Example:
    >>> next(table_rows("reviews.csv", "utf-8", {"text_column": "text", "label_column": "label"}))
    (2, ('Great film.', 'pos'))
    """
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        for number, line in _decoded_lines(path, encoding):
            if line.strip():
                record = _json_object(path, number, line)
                yield number, tuple(_json_value(path, number, record, *item) for item in columns.items())
        return
    rows = _csv_reader(path, encoding)
    header = next(rows, (None, None))[1]
    if header is None:
        return
    check_columns(path, header, columns)
    positions = [header.index(column) for column in columns.values()]
    for number, row in rows:
        if row:  # the csv module reads a blank line as an empty row
            yield number, tuple(row[i] if i < len(row) else "" for i in positions)


def _csv_reader(path, encoding):
    """`(first line number, row)` for each row of a CSV (`.tsv`: tab-separated) file, header included."""
    # Whole documents in one field easily pass the csv module's default limit of 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    lines = (line for _, line in _decoded_lines(path, encoding))
    # strict: a quote left open is an error, rather than the rest of the file read as one field.
    reader = csv.reader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise CorpusError(
                f"{path}, line {start}: not valid {'TSV' if path.suffix.lower() == '.tsv' else 'CSV'} ({error}). "
                "Close the quoted field (a quote inside one is written twice) or fix the row."
            ) from error
        yield start, row
        start = reader.line_num + 1


def _json_object(path, number, line):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(
            f"{path}, line {number}: not JSON ({error.msg} at column {error.colno}). "
            "A .jsonl file holds one JSON object per line."
        ) from error
    if not isinstance(record, dict):
        raise CorpusError(
            f"{path}, line {number}: a JSON {type(record).__name__}, not an object. "
            "A .jsonl file holds one JSON object per line."
        )
    return record


def _json_value(path, number, record, option, field):
    if field not in record:
        raise CorpusError(
            f"{path}, line {number} has no field {field!r}; its fields: {', '.join(map(str, record)) or '(none)'}. "
            f"Add it, or pass {option}=... (--{option.replace('_', '-')}) naming the field that holds it."
        )
    value = record[field]
    if isinstance(value, (dict, list)):
        raise CorpusError(f"{path}, line {number}: field {field!r} is a JSON {type(value).__name__}, not text.")
    return "" if value is None else str(value)


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
        vocabulary = path.read_text(encoding="utf-8").splitlines()
    else:
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
    # Checked on cache hits too: the vocabulary (and the model's embedding table) is smaller than configured.
    if len(vocabulary) < VOCABULARY_SHORTFALL * vocabulary_size:
        size = len(vocabulary)
        warnings.warn(
            f"Asked for a vocabulary of {vocabulary_size} tokens; the corpus {corpus.description} supports only "
            f"{size}: {size} tokens are used (ask for at most {size}, or give more text).",
            UserWarning,
            stacklevel=2,
        )
    return vocabulary


def train_word_piece_tokenizer(corpus, vocabulary_size, lowercase=True, strip_accents=False, cache_dir=None):
    """A `keras_hub.models.BertTokenizer` whose WordPiece vocabulary is trained on `corpus` (and cached).

    A BERT tokenizer (a `WordPieceTokenizer` that knows its [CLS], [SEP],
    [PAD] and [MASK] ids), so it plugs straight into keras-hub's BERT
    preprocessors and tasks, as well as `packed_dataset` and `bucketed_dataset`.

    Example:
    >>> tokenizer = train_word_piece_tokenizer(TextCorpus.from_files("corpus.txt"), 8192)
    >>> tokenizer(["the cat sat", "on the mat"])  # a ragged int32 batch of word-piece ids
    >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=128)
    """
    vocabulary = train_word_piece_vocabulary(
        corpus, vocabulary_size, lowercase=lowercase, strip_accents=strip_accents, cache_dir=cache_dir
    )
    # BertTokenizer passes strip_accents (and the default oov_token "[UNK]") on to WordPieceTokenizer.
    return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents)


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


def _then_end(dataset, empty):
    """`(element, False)` for each element of `dataset`, then `(empty, True)`: a `scan` can flush what it holds."""
    return dataset.map(lambda element: (element, False)).concatenate(tf.data.Dataset.from_tensors((empty, True)))


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

    def cut(held, read):
        """Cut the tokens held over from earlier reads plus this read's into pieces; hold the rest for the next."""
        tokens, is_last = read
        stream = tf.concat([held, tokens], axis=0)
        full = tf.size(stream) // piece_length * piece_length
        pieces, rest = tf.reshape(stream[:full], [-1, piece_length]), stream[full:]
        # The stream's end: what is held is the last, shorter piece (padded with -1 to stack with the others).
        last = tf.pad(rest, [[0, piece_length - tf.size(rest)]], constant_values=-1)[None]
        pieces = tf.cond(is_last & (tf.size(rest) > 0), lambda: tf.concat([pieces, last], 0), lambda: pieces)
        return rest, pieces

    def frame(piece):
        piece = piece[: tf.reduce_sum(tf.cast(piece >= 0, tf.int32))]
        length = tf.shape(piece)[0] + 2
        token_ids = tf.concat([[cls_id], piece, [sep_id]], axis=0)
        token_ids = tf.pad(token_ids, [[0, sequence_length - length]], constant_values=pad_id)
        return {
            "token_ids": tf.ensure_shape(token_ids, (sequence_length,)),
            "padding_mask": tf.sequence_mask(length, sequence_length, dtype=tf.int32),
            "segment_ids": tf.zeros((sequence_length,), tf.int32),
        }

    # Pieces are cut a read at a time: a token at a time (unbatch, then batch) costs about half a microsecond a token.
    reads = _then_end(corpus.dataset().batch(documents_per_read).map(tokenize), tf.zeros([0], tf.int32))
    sequences = reads.scan(tf.zeros([0], tf.int32), cut).unbatch().map(frame)
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
    batch_by="sequences",
    batch_multiple=1,
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

    `batch_by="sequences"` gives every batch `batch_size` documents;
    `batch_by="tokens"` gives every batch about `batch_size * sequence_length`
    token slots (a token budget, like fairseq's `max_tokens`): a bucket of
    width `w` batches `batch_size * sequence_length // w` documents, rounded
    down to a multiple of `batch_multiple` (the data-parallel replicas that
    split it). Short documents then fill as much of a step as long ones, so
    the costs every step pays whatever its width (the optimizer update,
    dispatch) are spread over as many tokens.

    Example:
    >>> data = bucketed_dataset(corpus, tokenizer, sequence_length=64, batch_size=32, bucket_widths=(16, 32, 64))
    >>> mlm.fit(data, epochs=3)
    >>> by_tokens = bucketed_dataset(corpus, tokenizer, sequence_length=64, batch_size=32, batch_by="tokens")
    """
    cls_id, sep_id, pad_id = _framing_token_ids(corpus, tokenizer, sequence_length)
    widths = range(16, sequence_length, 16) if bucket_widths is None else bucket_widths
    widths = sorted({int(width) for width in widths} | {sequence_length})
    if widths[0] < 2 or widths[-1] > sequence_length:
        raise ValueError(f"bucket_widths must lie between 2 and sequence_length={sequence_length}; got {bucket_widths}.")
    if batch_by not in BATCH_BY:
        raise ValueError(f"batch_by must be {' or '.join(map(repr, BATCH_BY))}; got {batch_by!r}.")
    if batch_size % batch_multiple:
        raise ValueError(f"batch_size {batch_size} must be a multiple of batch_multiple {batch_multiple}.")
    if batch_by == "tokens":
        batch_sizes = [batch_size * sequence_length // width // batch_multiple * batch_multiple for width in widths]
    else:
        batch_sizes = [batch_size] * len(widths)

    def tokenize(texts):
        tokens = tf.cast(tokenizer(texts), tf.int32)[:, : sequence_length - 2]
        column = tf.ones([tf.shape(texts)[0], 1], tf.int32)
        return tf.concat([column * cls_id, tokens, column * sep_id], axis=1)

    # Unbatched ragged rows are typed as ragged; mapped before the cache, the cache holds plain tensors, which
    # `batch_by_width` takes as they are (it would otherwise map them on every pass).
    documents = corpus.dataset().batch(documents_per_read).map(tokenize).unbatch().map(tf.identity)
    if cache:
        documents = documents.cache()
    if shuffle_buffer:
        documents = documents.shuffle(shuffle_buffer, seed=seed)

    def to_inputs(token_ids):
        padding = token_ids < 0
        return {"token_ids": tf.where(padding, pad_id, token_ids), "padding_mask": tf.cast(~padding, tf.int32),
                "segment_ids": tf.zeros_like(token_ids)}

    batches = batch_by_width(documents, widths, batch_sizes, drop_remainder)
    return batches.map(to_inputs).prefetch(tf.data.AUTOTUNE)


def batch_by_width(documents, widths, batch_sizes, drop_remainder=False, pool_size=1024):
    """Batch a `tf.data` stream of 1-D int32 `documents` (non-negative ids) by length, padded with -1:
    `bucket_by_sequence_length`'s batches, in its order, at a fraction of its cost.

    A document of length `n` (at most the last of the increasing `widths`)
    joins the bucket of the smallest of `widths` at least `n`; bucket `i`
    emits a batch of its `batch_sizes[i]` documents, padded to `widths[i]`,
    with the document that fills it. `tf.data`'s own grouping costs about 30
    microseconds a document; here documents come in pools of `pool_size` and
    are bucketed with a few vectorized ops a pool, the part-filled buckets
    (each at most one batch) carried from pool to pool. At the end of the
    stream each part-filled bucket is a last, smaller batch, in bucket order,
    or dropped with `drop_remainder`.

    Example:
    >>> documents = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[2, 5, 3], [2, 3], [2, 7, 8, 9, 3]]))
    >>> [b.numpy().tolist() for b in batch_by_width(documents, [3, 5], [2, 2])]
    [[[2, 5, 3], [2, 3, -1]], [[2, 7, 8, 9, 3]]]
    """
    if isinstance(documents.element_spec, tf.RaggedTensorSpec):  # rows of a ragged batch, typed as ragged
        documents = documents.map(tf.identity)  # now plain tensors, which `padded_batch` takes
    if not widths or list(widths) != sorted(set(widths)) or len(batch_sizes) != len(widths) or min(batch_sizes) < 1:
        raise ValueError(f"widths must increase and batch_sizes give one size (at least 1) a width; got {widths} and "
                         f"{batch_sizes}.")
    if documents.element_spec.dtype != tf.int32:
        raise ValueError(f"documents must be int32 token ids; got {documents.element_spec.dtype.name}: cast them first.")
    sequence_length, edges = widths[-1], tf.constant(widths)
    slots = max(size * width for size, width in zip(batch_sizes, widths))  # the largest batch, flat

    def add_pool(held, pool):
        """`held`: each bucket's part-filled batch, `(size, width)`, and how many rows of it are filled."""
        rows, is_last = pool
        bucket = tf.searchsorted(edges, tf.reduce_sum(tf.cast(rows >= 0, tf.int32), axis=1), side="left")
        flush = tf.logical_and(is_last, not drop_remainder)
        batches, counts, ends, next_held = [], [], [], []
        for i, (size, width) in enumerate(zip(batch_sizes, widths)):
            part, count = held[i]
            arrivals = tf.cast(tf.where(bucket == i)[:, 0], tf.int32)
            queue = tf.concat([part[:count], tf.gather(rows, arrivals)[:, :width]], axis=0)
            queued = tf.shape(queue)[0]
            taken = tf.where(flush, queued, queued // size * size)
            emitted = (taken + size - 1) // size
            starts = tf.range(emitted) * size
            counts.append(tf.minimum(size, taken - starts))
            batch = tf.pad(queue[:taken], [[0, emitted * size - taken], [0, 0]], constant_values=-1)
            batches.append(tf.pad(tf.reshape(batch, [emitted, size * width]), [[0, 0], [0, slots - size * width]]))
            # A batch comes out where the document that fills it arrived. Only the end marker's pool (no rows)
            # emits part-filled batches: their index sorts them after any arrival, in bucket order.
            filler = tf.minimum(starts + size - 1 - count, tf.size(arrivals))
            ends.append(tf.gather(tf.concat([arrivals, [tf.shape(rows)[0] + i]], 0), filler))
            left = queue[taken:]
            next_held.append((tf.pad(left, [[0, size - tf.shape(left)[0]], [0, 0]], constant_values=-1), queued - taken))
        order = tf.argsort(tf.concat(ends, 0), stable=True)
        buckets = tf.concat([tf.fill([tf.size(c)], i) for i, c in enumerate(counts)], 0)
        return tuple(next_held), tuple(tf.gather(tf.concat(t, 0), order) for t in (batches, counts, [buckets]))

    def unflatten(batch, count, bucket):
        size, width = tf.gather(batch_sizes, bucket), edges[bucket]
        return tf.reshape(batch[: size * width], [size, width])[:count]

    # padded_batch costs a microsecond or two a document, ragged_batch about 25.
    pools = _then_end(documents.padded_batch(pool_size, [sequence_length], padding_values=-1),
                      tf.zeros([0, sequence_length], tf.int32))
    start = tuple((tf.fill([size, width], -1), 0) for size, width in zip(batch_sizes, widths))
    batches = pools.scan(start, add_pool).unbatch()
    return batches.map(unflatten)
