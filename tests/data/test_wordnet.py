import pytest

from keras_pretrain.data import CorpusError, DataNotFoundError, find_wordnet, gloss_corpus, load_noun_glosses, wordnet
from tests.conftest import WORDNET_WORDS, synthetic_wordnet


def test_noun_glosses_carry_their_lexicographer_category(wordnet_dir):
    glosses, categories = load_noun_glosses(wordnet_dir)
    assert len(glosses) == len(categories) == 12 * len(WORDNET_WORDS)
    assert set(categories) == {wordnet.NOUN_CATEGORIES[lex] for lex in WORDNET_WORDS}
    animal = [g for g, c in zip(glosses, categories) if c == "noun.animal"]
    assert len(animal) == 12 and all(set(g.split()[:6]) <= set(WORDNET_WORDS[5].split()) for g in animal)
    assert animal[0].endswith('"an example 0"')  # the gloss keeps its examples, loses the trailing spaces

    glosses, categories = load_noun_glosses(wordnet_dir, categories=["noun.food", "noun.plant"])
    assert sorted(set(categories)) == ["noun.food", "noun.plant"] and len(glosses) == 24
    with pytest.raises(ValueError, match="Unknown noun categories.*noun.fruit"):
        load_noun_glosses(wordnet_dir, categories=["noun.fruit"])


def test_gloss_corpus_reads_all_four_files_minus_the_excluded(wordnet_dir):
    glosses, _ = load_noun_glosses(wordnet_dir)
    corpus = list(gloss_corpus(wordnet_dir, exclude=glosses[:10]))
    assert len(corpus) == len(glosses) - 10 + 3
    assert {"move fast on foot", "very large in size", "in a quick manner"} <= set(corpus)
    assert not set(glosses[:10]) & set(corpus)


def test_missing_wordnet_lists_what_was_tried_and_how_to_fix_it(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match=r"(?s)no_such_dir: does not exist.*apt-get install wordnet-base.*nltk"):
        find_wordnet(tmp_path / "no_such_dir")
    (tmp_path / "data.noun").write_text("")
    with pytest.raises(DataNotFoundError, match="lacks data.verb, data.adj, data.adv"):
        find_wordnet(tmp_path)


def test_searches_debian_then_nltk_data(tmp_path, monkeypatch):
    nltk_wordnet = tmp_path / "nltk" / "corpora" / "wordnet"
    nltk_wordnet.mkdir(parents=True)
    synthetic_wordnet(nltk_wordnet)
    monkeypatch.setattr(wordnet, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk"))
    assert find_wordnet() == nltk_wordnet
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "debian")):
        find_wordnet()


def test_undecodable_and_malformed_lines_are_clear_errors(tmp_path):
    synthetic_wordnet(tmp_path)
    (tmp_path / "data.noun").write_bytes(b"  1 licence\n00000001 05 n 01 cat 0 000 | a feline \xff pet\n")
    with pytest.raises(CorpusError, match=r"data.noun, line 2: byte b'\\xff'.*not valid UTF-8"):
        load_noun_glosses(tmp_path)
    (tmp_path / "data.noun").write_text("00000001 05 n 01 cat 0 000 a gloss without its bar\n")
    with pytest.raises(CorpusError, match="line 1 is not a WordNet synset line"):
        load_noun_glosses(tmp_path)
    (tmp_path / "data.noun").write_text("  1 only the licence\n")
    with pytest.raises(CorpusError, match="holds no noun glosses"):
        load_noun_glosses(tmp_path)
