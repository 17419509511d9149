"""WordNet 3.0 glosses: noun glosses labelled with their lexicographer category, and all glosses as a corpus.

WordNet's `data.noun`, `data.verb`, `data.adj` and `data.adv` hold one synset
per line: field 2 is the two-digit lexicographer file number (`06` is
`noun.artifact`), and the gloss (definition, then quoted examples) follows
` | `. Lines starting with two spaces are the licence header.

Example:
>>> directory = find_wordnet()                    # Debian's, NLTK's, or a directory you pass
>>> glosses, categories = load_noun_glosses(directory)
>>> glosses[0], categories[0]
('that which is perceived or known or inferred to have its own distinct existence (living or nonliving)', 'noun.Tops')
>>> corpus = gloss_corpus(directory, exclude=held_out_glosses)  # for pre-training
"""

import os
from pathlib import Path

import numpy as np

from keras_pretrain.data.fashion_mnist import DataNotFoundError
from keras_pretrain.data.text import CorpusError, TextCorpus

DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
# Noun lexicographer files, numbered as in WordNet's lexnames(5WN) manual page.
NOUN_CATEGORIES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
    8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling",
    13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object",
    18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
    23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance",
    28: "noun.time",
}
DEBIAN_DIR = Path("/usr/share/wordnet")
# The 8 large, distinct noun categories of the few-label task (2.5k-11.6k synsets each).
FEW_LABEL_CATEGORIES = (
    "noun.artifact", "noun.person", "noun.plant", "noun.animal",
    "noun.act", "noun.communication", "noun.location", "noun.food",
)


def candidate_dirs():
    """Where WordNet is looked for when no directory is given: Debian's, then NLTK's data paths."""
    nltk_roots = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    nltk_roots += [Path.home() / "nltk_data", Path("/usr/share/nltk_data"), Path("/usr/local/share/nltk_data")]
    return [DEBIAN_DIR] + [root / "corpora" / "wordnet" for root in nltk_roots]


def find_wordnet(data_dir=None):
    """The directory holding WordNet's four `data.*` files: `data_dir` if given, else the first candidate that has them.

    Raises `DataNotFoundError` listing every place tried and how to get the files.

    Example:
    >>> find_wordnet()  # Debian's wordnet-base
    PosixPath('/usr/share/wordnet')
    """
    tried = [Path(data_dir)] if data_dir is not None else candidate_dirs()
    for directory in tried:
        if all((directory / name).is_file() for name in DATA_FILES):
            return directory
    where = "\n".join(
        f"  {d}: {'does not exist' if not d.exists() else 'lacks ' + ', '.join(n for n in DATA_FILES if not (d / n).is_file())}"
        for d in tried
    )
    raise DataNotFoundError(
        f"WordNet 3.0 data files ({', '.join(DATA_FILES)}) not found. Tried:\n{where}\n"
        "Fix: `apt-get install wordnet-base` (Debian/Ubuntu, into /usr/share/wordnet), or "
        "`python -c \"import nltk; nltk.download('wordnet')\"` (then unzip ~/nltk_data/corpora/wordnet.zip "
        "if it stays zipped), or pass the directory holding the files (--data-dir)."
    )


def read_synsets(path):
    """`(lexicographer file number, gloss)` for each synset line of a WordNet `data.*` file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.startswith(b"  ") or not raw.strip():
                continue  # the licence header
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise CorpusError(
                    f"{path}, line {number}: byte {raw[error.start:error.start + 1]!r} at column {error.start} "
                    "is not valid UTF-8. Is this a WordNet 3.0 data file?"
                ) from error
            fields = line.split(" ", 2)
            if len(fields) < 3 or " | " not in line or not fields[1].isdigit():
                raise CorpusError(
                    f"{path}, line {number} is not a WordNet synset line (offset, lex file number, ..., ' | ' gloss): "
                    f"{line[:80]!r}"
                )
            yield int(fields[1]), line.split(" | ", 1)[1].strip()


def load_noun_glosses(data_dir=None, categories=None):
    """Noun glosses and their lexicographer categories (`"noun.artifact"`, ...), in file order.

    `categories` keeps only those categories. Returns `(glosses, categories)`:
    a list of strings and a numpy array of category names.

    Example:
    >>> glosses, categories = load_noun_glosses(categories=["noun.animal", "noun.plant"])
    >>> len(glosses), glosses[0], categories[0]
    (15539, 'taxonomic kingdom comprising all living or extinct animals', 'noun.animal')
    """
    path = find_wordnet(data_dir) / "data.noun"
    pairs = [(gloss, NOUN_CATEGORIES.get(lex, f"lex{lex:02d}")) for lex, gloss in read_synsets(path)]
    if categories is not None:
        unknown = sorted(set(categories) - set(NOUN_CATEGORIES.values()))
        if unknown:
            raise ValueError(f"Unknown noun categories {unknown}; known: {sorted(NOUN_CATEGORIES.values())}.")
        pairs = [pair for pair in pairs if pair[1] in set(categories)]
    if not pairs:
        raise CorpusError(f"{path} holds no noun glosses{' in ' + str(list(categories)) if categories else ''}.")
    glosses, names = zip(*pairs)
    return list(glosses), np.array(names)


def gloss_corpus(data_dir=None, exclude=()):
    """A `TextCorpus` of the glosses of all four `data.*` files, one document each, minus those in `exclude`.

    Pass the evaluation split's glosses as `exclude`, so pre-training never
    sees them (a gloss text shared by several synsets is excluded everywhere).

    Example:
    >>> corpus = gloss_corpus(exclude=[*splits.val.inputs, *splits.test.inputs])
    >>> corpus.description
    'WordNet glosses in /usr/share/wordnet'
    """
    directory = find_wordnet(data_dir)
    excluded = set(exclude)

    def glosses():
        for name in DATA_FILES:
            for _, gloss in read_synsets(directory / name):
                if gloss not in excluded:
                    yield gloss

    return TextCorpus.from_texts(glosses, name=f"WordNet glosses in {directory}")


def noun_gloss_source(data_dir=None, categories=FEW_LABEL_CATEGORIES):
    """Noun glosses labelled with their category, as a `LabelledTextSource` (class names without `noun.`).

    Example:
    >>> source = noun_gloss_source()             # the spec "wordnet_nouns"
    >>> source.class_names[:3]
    ['artifact', 'person', 'plant']
    """
    from keras_pretrain.data.labelled_text import LabelledTextSource

    glosses, names = load_noun_glosses(data_dir, categories)
    labels = [list(categories).index(name) for name in names]
    class_names = [category.split(".", 1)[1] for category in categories]
    return LabelledTextSource.from_lists(glosses, labels, class_names, description=f"WordNet noun glosses ({len(glosses)})")
