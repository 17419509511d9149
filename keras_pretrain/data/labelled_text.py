"""Labelled text for classification: tables, one folder per class, TFDS, or Python lists, read lazily.

A `LabelledTextSource` never holds the documents: the labels are read in one
streaming pass (keeping only an integer per document), the few documents a
split needs are picked by index in another, and the rest streams out as a
`TextCorpus` for pre-training.

Example:
>>> source = labelled_text_source("reviews.csv", text_column="body", label_column="stars")
>>> source.class_names, len(source)
(['1', '2', '3', '4', '5'], 120000)
>>> train_idx, test_idx = few_label_split(source.labels(), per_class=20, val_per_class=100)
>>> train_texts = source.texts(train_idx)
>>> corpus = source.corpus(exclude=test_idx)  # pre-training never sees the test documents
"""

import os
import re
from array import array
from contextlib import closing
from numbers import Integral
from pathlib import Path

import numpy as np

from keras_pretrain.data.text import (
    TABLE_EXTENSIONS,
    CorpusError,
    TextCorpus,
    _decode,
    _read_documents,
    check_columns,
    resolve_files,
    table_columns,
    table_rows,
)
from keras_pretrain.data.tfds import load_tfds, parse_tfds_spec

# Files a class folder contributes: running text (tables carry their own labels, so they are not taken here).
FOLDER_EXTENSIONS = (".txt", ".text", ".md", ".rst")
FOLDER_MODES = ("files", "lines", "paragraphs")
ACCEPTED_SPECS = (
    "a .csv / .tsv / .jsonl table, a directory with one subfolder per class, "
    "'tfds:NAME' or 'tfds:NAME:SPLIT' (e.g. tfds:imdb_reviews:test), 'wordnet_nouns'"
)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def sort_class_names(names):
    """`names` sorted: numerically when every one is a number (so '10' follows '9'), as text otherwise.

    Example:
    >>> sort_class_names(["10", "9", "0"]), sort_class_names(["pos", "neg"])
    (['0', '9', '10'], ['neg', 'pos'])
    """
    names = [str(name) for name in names]
    if names and all(_NUMBER.fullmatch(name) for name in names):
        return sorted(names, key=lambda name: (float(name), name))
    return sorted(names)


class LabelledTextSource:
    """Labelled documents read lazily: labels in one streaming pass, texts picked by index in another.

    Build one with `from_table`, `from_folder`, `from_tfds` or `from_lists`
    (or `labelled_text_source`, which picks among them). Documents whose text
    is blank are skipped in every pass, so index `i` is the same document for
    `labels()`, `texts()` and `corpus()`. Texts come back stripped.

    Example:
    >>> source = LabelledTextSource.from_folder("reviews/")  # reviews/neg/*.txt, reviews/pos/*.txt
    >>> source.class_names
    ['neg', 'pos']
    >>> source.labels()[:3], source.texts([0, 2])
    (array([0, 0, 0]), ['A dull film.', 'Two hours lost.'])
    """

    def __init__(self, rows, description, class_names=None):
        """`rows`: a callable returning a fresh iterator of `(text, label)` for the non-blank documents.

        Labels are strings (class names, found by the labels pass) or, when
        `class_names` is given, integer indices into it.
        """

        def fresh_rows():
            # A generator whatever `rows` returns, so stopping a pass early can close the files it reads.
            yield from rows()

        self._rows = fresh_rows
        self.description = description
        self._class_names = None if class_names is None else [str(name) for name in class_names]
        self._fixed_names = class_names is not None
        self._labels = None

    @property
    def class_names(self):
        """The class names: label `i` means `class_names[i]` (a labels pass, the first time, unless known up front)."""
        if self._class_names is None:
            self.labels()
        return list(self._class_names)

    def __len__(self):
        return len(self.labels())

    def labels(self):
        """Each document's int64 label, an index into `class_names`: one streaming pass, then cached (read-only)."""
        if self._labels is not None:
            return self._labels
        if self._fixed_names:
            labels = np.fromiter((label for _, label in self._rows()), np.int64)
            bad = labels[(labels < 0) | (labels >= len(self._class_names))]
            if len(bad):
                raise CorpusError(
                    f"{self.description}: label {bad[0]} is not an index into its {len(self._class_names)} "
                    f"class names {self._class_names}."
                )
        else:
            # Provisional ids in order of appearance; the name -> id map holds one entry per class, not per document.
            first_seen, provisional = {}, array("q")
            for _, label in self._rows():
                provisional.append(first_seen.setdefault(label, len(first_seen)))
            self._class_names = sort_class_names(first_seen)
            final = np.empty(len(first_seen), np.int64)
            for name, i in first_seen.items():
                final[i] = self._class_names.index(name)
            labels = final[np.frombuffer(provisional, np.int64)] if len(provisional) else np.zeros(0, np.int64)
        if not len(labels):
            raise CorpusError(f"{self.description} holds no labelled documents: every text is blank or it has no rows.")
        labels.flags.writeable = False  # the cached array is shared by every caller
        self._labels = labels
        return labels

    def texts(self, indices):
        """The documents at `indices`, in the order of `indices` (repeats allowed); one streaming pass.

        The pass stops after the last index wanted.
        """
        indices = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if any(i < 0 for i in indices):
            indices = [i + len(self) if i < 0 else i for i in indices]
        wanted = {}
        for position, index in enumerate(indices):
            wanted.setdefault(index, []).append(position)
        found, texts = 0, [None] * len(indices)
        if wanted:
            with closing(self._rows()) as rows:
                for index, (text, _) in enumerate(rows):
                    for position in wanted.get(index, ()):
                        texts[position] = text
                    found += index in wanted
                    if found == len(wanted):
                        break
        if found < len(wanted):
            missing = sorted(i for i in wanted if texts[wanted[i][0]] is None)
            raise IndexError(
                f"index {missing[0]} is out of range: {self.description} holds {len(self)} documents "
                f"(indices 0 to {len(self) - 1})."
            )
        return texts

    def corpus(self, exclude=()):
        """Every document except those at the indices in `exclude`, as a streaming `TextCorpus` (for pre-training).

        Example:
        >>> corpus = source.corpus(exclude=np.concatenate([val_idx, test_idx]))
        """
        excluded = {int(i) for i in np.asarray(exclude, dtype=np.int64).reshape(-1)}
        if any(i < 0 for i in excluded):
            excluded = {i + len(self) if i < 0 else i for i in excluded}

        def documents():
            for index, (text, _) in enumerate(self._rows()):
                if index not in excluded:
                    yield text

        name = self.description + (f" minus {len(excluded)} held-out documents" if excluded else "")
        return TextCorpus.from_texts(documents, name=name)

    def __repr__(self):
        return f"LabelledTextSource({self.description})"

    @classmethod
    def from_table(cls, path, text_column="text", label_column="label", encoding="utf-8"):
        """Documents and labels from the columns of a `.csv` / `.tsv` table (with a header row) or `.jsonl` file.

        Label values are class names (numbers are names too: `0` ... `10`
        sort numerically). The file is checked now for its columns and at
        least one row; the rows are read lazily, on each pass.

        Example:
        >>> source = LabelledTextSource.from_table("reviews.tsv", text_column="review", label_column="sentiment")
        """
        path = Path(path)
        if not path.is_file():
            what = "is a directory, not a table" if path.is_dir() else "not found"
            raise CorpusError(f"Labelled table {path} {what}: pass the path of a .csv, .tsv or .jsonl file.")
        if path.suffix.lower() not in TABLE_EXTENSIONS:
            raise CorpusError(
                f"Labelled table {path} must be a .csv, .tsv or .jsonl file (by its extension); "
                "rename it, or use one folder per class with from_folder."
            )
        columns = table_columns(path, encoding)
        if columns is None:
            raise CorpusError(f"Labelled table {path} is empty: it needs a header row (.jsonl: JSON objects) and rows.")
        wanted = {"text_column": text_column, "label_column": label_column}
        check_columns(path, columns, wanted)

        def rows():
            for number, (text, label) in table_rows(path, encoding, wanted):
                if not text.strip():
                    continue
                if not label.strip():
                    raise CorpusError(
                        f"{path}, line {number}: empty label in column {label_column!r}. "
                        "Label every row, or drop the unlabelled ones."
                    )
                yield text.strip(), label.strip()

        source = cls(rows, f"{path} (text {text_column!r}, label {label_column!r})")
        with closing(rows()) as first:
            if next(first, None) is None:
                raise CorpusError(f"Labelled table {path} has no rows with text in column {text_column!r}: add some.")
        return source

    @classmethod
    def from_folder(cls, path, mode="files", encoding="utf-8"):
        """Documents from one subfolder per class, named after the class (`path/pos/*.txt`, `path/neg/*.txt`).

        Each text file (`.txt .text .md .rst`, found recursively, hidden ones
        skipped) under a class folder is one document (`mode="files"`, its
        lines joined with a space), one per non-blank line (`"lines"`) or one
        per blank-line separated paragraph (`"paragraphs"`). Files directly in
        `path` are ignored (data sets often keep notes or indexes there).

        Example:
        >>> source = LabelledTextSource.from_folder("aclImdb/test")  # aclImdb/test/neg, aclImdb/test/pos
        """
        if mode not in FOLDER_MODES:
            raise ValueError(f"mode must be 'files', 'lines' or 'paragraphs'; got {mode!r}.")
        root = Path(path)
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "not found"
            raise CorpusError(f"Labelled folder {root} {what}: pass a folder holding one subfolder per class.")
        names = sort_class_names(entry.name for entry in os.scandir(root) if entry.is_dir() and entry.name[0] != ".")
        if not names:
            raise CorpusError(
                f"Labelled folder {root} has no class subfolders: put each class's files in a subfolder named after "
                f"the class ({root}/<class>/*.txt)."
            )
        files, empty = [], []
        for name in names:
            try:
                files.append(resolve_files(root / name, FOLDER_EXTENSIONS))
            except CorpusError:
                empty.append(name)
        if empty:
            raise CorpusError(
                f"Class folders {empty} in {root} hold no text files ({' '.join(FOLDER_EXTENSIONS)}): "
                "add files to them, or remove them."
            )

        def rows():
            for label, class_files in enumerate(files):
                for file in class_files:
                    for text in _read_documents(file, mode, encoding):
                        yield text, label

        source = cls(rows, f"folder {root} ({len(names)} classes, {mode})", class_names=names)
        with closing(rows()) as first:
            if next(first, None) is None:
                raise CorpusError(f"Labelled folder {root}: every text file in its class folders is blank.")
        return source

    @classmethod
    def from_tfds(cls, name, split="train", text_key="text", label_key="label", data_dir=None, download=False):
        """Documents and labels from a TensorFlow Datasets data set, e.g. `imdb_reviews` or `ag_news_subset`.

        Class names come from `info.features[label_key].names` (in TFDS's
        order). With `download=False` (the default) nothing is fetched, and a
        `DataNotFoundError` says how to prepare the data set.

        Example:
        >>> source = LabelledTextSource.from_tfds("imdb_reviews", split="test", data_dir="~/tensorflow_datasets")
        >>> source.class_names
        ['neg', 'pos']
        """
        import tensorflow_datasets as tfds

        # Unshuffled, so index i is the same example in every pass.
        dataset, info = load_tfds(name, split, data_dir, download, instead="a local table or folder",
                                  with_info=True, shuffle_files=False)
        features = sorted(dataset.element_spec) if isinstance(dataset.element_spec, dict) else []
        for option, key in (("text_key", text_key), ("label_key", label_key)):
            if key not in features:
                raise CorpusError(
                    f"TFDS data set {name!r} has no feature {key!r}; its features: {', '.join(features)}. "
                    f"Pass {option}=... (--{'text' if option == 'text_key' else 'label'}-column) naming the right one."
                )
        class_names = getattr(info.features[label_key], "names", None)
        description = f"tfds {name} ({split})"

        def rows():
            pairs = dataset.map(lambda example: (example[text_key], example[label_key]))
            for i, (text, label) in enumerate(tfds.as_numpy(pairs)):
                text = _decode(text, f"{description} example {i}", "utf-8").strip()
                if text:
                    # Without class names (not a ClassLabel feature), label values are the names.
                    yield text, (int(label) if class_names else _label_name(label))

        return cls(rows, description, class_names=class_names)

    @classmethod
    def from_lists(cls, texts, labels, class_names=None, description="texts"):
        """Documents and labels from Python (or numpy) sequences, for small or built-in data.

        Without `class_names`, the label values are the class names. With
        them, each label is a class name or an integer index into them.

        Example:
        >>> source = LabelledTextSource.from_lists(["a fine film", "dull"], ["pos", "neg"])
        >>> source.class_names, source.labels()
        (['neg', 'pos'], array([1, 0]))
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("from_lists takes a list of documents, not one string: wrap it in a list.")
        texts = list(texts)
        labels = labels.reshape(-1).tolist() if isinstance(labels, np.ndarray) else list(labels)
        if len(texts) != len(labels):
            raise CorpusError(f"{description}: {len(texts)} texts but {len(labels)} labels; give one label per text.")
        index = None if class_names is None else {str(name): i for i, name in enumerate(class_names)}
        kept = []
        for i, (text, label) in enumerate(zip(texts, labels)):
            if isinstance(text, bytes):
                text = _decode(text, f"{description} item {i}", "utf-8")
            if not isinstance(text, str):
                raise TypeError(f"{description} item {i} is a {type(text).__name__}, not a string.")
            if not text.strip():
                continue
            if index is None:
                label = _label_name(label)
                if not label:
                    raise CorpusError(f"{description} item {i}: empty label. Label every text, or drop it.")
            elif isinstance(label, (Integral, np.integer)) and not isinstance(label, bool):
                label = int(label)
            elif str(label) in index:
                label = index[str(label)]
            else:
                raise CorpusError(
                    f"{description} item {i}: label {label!r} is neither one of the class names {list(index)} "
                    "nor an index into them."
                )
            kept.append((text.strip(), label))
        return cls(lambda: iter(kept), description, class_names=class_names)


def _label_name(label):
    if isinstance(label, bytes):
        label = label.decode("utf-8")
    if isinstance(label, np.generic):
        label = label.item()
    return str(label).strip()


def labelled_text_source(spec, text_column="text", label_column="label", data_dir=None, download=True):
    """A `LabelledTextSource` from a command-line style `spec`.

    `"tfds:NAME"` or `"tfds:NAME:SPLIT"` (`text_column` / `label_column` name
    its features; `data_dir` and `download` go to TFDS); a `.csv`, `.tsv` or
    `.jsonl` path -> `from_table`; a directory -> `from_folder`;
    `"wordnet_nouns"` -> 8 WordNet noun categories (from `data_dir` or the
    usual places); a `LabelledTextSource` is returned as it is.

    Example:
    >>> labelled_text_source("tfds:imdb_reviews:test").class_names
    ['neg', 'pos']
    >>> source = labelled_text_source("data/reviews.csv", text_column="body")
    """
    if isinstance(spec, LabelledTextSource):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise CorpusError(f"Cannot read labelled text from a {type(spec).__name__}; accepted: {ACCEPTED_SPECS}.")
    text = os.fspath(spec)
    if text == "wordnet_nouns":
        from keras_pretrain.data.wordnet import noun_gloss_source

        return noun_gloss_source(data_dir)
    tfds_spec = parse_tfds_spec(text)
    if tfds_spec:
        return LabelledTextSource.from_tfds(
            tfds_spec[0], split=tfds_spec[1], text_key=text_column, label_key=label_column,
            data_dir=data_dir, download=download,
        )
    path = Path(text)
    if path.is_dir():
        return LabelledTextSource.from_folder(path)
    if path.suffix.lower() in TABLE_EXTENSIONS:
        return LabelledTextSource.from_table(path, text_column=text_column, label_column=label_column)
    what = "is not a table (by its extension)" if path.exists() else "not found"
    raise CorpusError(f"Labelled text {text!r} {what}; accepted: {ACCEPTED_SPECS}.")
