import numpy as np
import pytest

from keras_pretrain.data import (
    CorpusError,
    DataNotFoundError,
    LabelledTextSource,
    TextCorpus,
    labelled_text_source,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_consistent(source):
    """labels(), texts() and corpus() describe the same documents in the same order."""
    count = len(source)
    texts = source.texts(range(count))
    assert len(source.labels()) == count and source.labels().dtype == np.int64
    assert list(source.corpus()) == texts
    assert list(source.corpus(exclude=[0, count - 1])) == texts[1:-1]
    return texts


def test_csv_with_quotes_multi_line_text_and_numeric_labels(tmp_path):
    rows = [f'"review {i}, with a comma",{i}' for i in range(11)]
    rows.insert(3, '"a review\nover two lines",10')
    rows.insert(5, '   ,7')  # blank text: skipped, whatever its label
    path = write(tmp_path / "reviews.csv", "text,label\n" + "\n".join(rows) + "\n")
    source = LabelledTextSource.from_table(path)
    # Numbers sort as numbers: '10' after '9', not after '1'.
    assert source.class_names == [str(i) for i in range(11)]
    assert len(source) == 12
    texts = assert_consistent(source)
    assert texts[3] == "a review\nover two lines" and texts[4] == "review 3, with a comma"
    np.testing.assert_array_equal(source.labels(), [0, 1, 2, 10, 3, 4, 5, 6, 7, 8, 9, 10])
    assert not source.labels().flags.writeable  # the cached labels are shared
    assert source.texts([4, 0, 4]) == ["review 3, with a comma", "review 0, with a comma", "review 3, with a comma"]
    assert source.texts(np.array([-1])) == ["review 10, with a comma"]
    assert source.texts([]) == []
    with pytest.raises(IndexError, match=r"index 12 is out of range: .*reviews.csv .* holds 12 documents"):
        source.texts([1, 12])


def test_tsv_and_jsonl_with_named_columns_and_text_labels(tmp_path):
    rows = ["id\tsentiment\treview", "1\tpos\tgreat, really", "2\tneg\tdull", "3\tpos\t", "4\tneg\tslow"]
    tsv = write(tmp_path / "a.tsv", "\n".join(rows) + "\n")
    source = LabelledTextSource.from_table(tsv, text_column="review", label_column="sentiment")
    assert source.class_names == ["neg", "pos"]
    assert assert_consistent(source) == ["great, really", "dull", "slow"]
    np.testing.assert_array_equal(source.labels(), [1, 0, 0])
    assert "a.tsv (text 'review', label 'sentiment')" in source.description

    rows = ['{"t": "one", "y": 2}', "", '{"t": " ", "y": 1}', '{"t": "two", "y": 1.5}', '{"t": "three", "y": 2}']
    jsonl = write(tmp_path / "b.jsonl", "\n".join(rows) + "\n")
    source = LabelledTextSource.from_table(jsonl, text_column="t", label_column="y")
    assert source.class_names == ["1.5", "2"]  # the blank row's label 1 is not a class
    assert assert_consistent(source) == ["one", "two", "three"]
    np.testing.assert_array_equal(source.labels(), [1, 0, 1])


def test_labels_pass_reads_once_and_texts_pass_stops_early(tmp_path, monkeypatch):
    path = write(tmp_path / "a.csv", "text,label\n" + "".join(f"doc {i},{'ab'[i % 2]}\n" for i in range(50)))
    source = LabelledTextSource.from_table(path)
    passes = []
    rows = source._rows
    monkeypatch.setattr(source, "_rows", lambda: passes.append(1) or rows())
    source.labels(), source.class_names, len(source), source.labels()
    assert len(passes) == 1  # computed once, then cached
    seen = []
    monkeypatch.setattr(source, "_rows", lambda: (seen.append(row) or row for row in rows()))
    assert source.texts([3, 1]) == ["doc 3", "doc 1"]
    assert len(seen) == 4  # the pass stopped after index 3


def test_folder_per_class_in_files_and_lines_mode(tmp_path):
    root = tmp_path / "reviews"
    write(root / "pos" / "1.txt", "A fine\nfilm.\n")
    write(root / "pos" / "more" / "2.md", "Loved it.\n")
    write(root / "neg" / "1.txt", "Dull.\n\nToo long.\n")
    write(root / "neg" / "2.txt", "\n \n")  # blank: no document
    write(root / "neg" / ".3.txt", "hidden")
    write(root / "neg" / "notes.csv", "text,label\nnot a document,pos\n")
    write(root / "README.txt", "files beside the class folders are not documents")
    write(root / ".cache" / "x.txt", "hidden folder, not a class")
    source = LabelledTextSource.from_folder(root)
    assert source.class_names == ["neg", "pos"]
    assert assert_consistent(source) == ["Dull. Too long.", "A fine film.", "Loved it."]
    np.testing.assert_array_equal(source.labels(), [0, 1, 1])
    lines = LabelledTextSource.from_folder(root, mode="lines")
    assert assert_consistent(lines) == ["Dull.", "Too long.", "A fine", "film.", "Loved it."]
    np.testing.assert_array_equal(lines.labels(), [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="mode must be 'files', 'lines' or 'paragraphs'; got 'words'"):
        LabelledTextSource.from_folder(root, mode="words")


def test_folder_errors(tmp_path):
    with pytest.raises(CorpusError, match=r"Labelled folder .*nowhere not found: pass a folder holding one subfolder"):
        LabelledTextSource.from_folder(tmp_path / "nowhere")
    write(tmp_path / "flat" / "a.txt", "no class folders")
    with pytest.raises(CorpusError, match=r"flat has no class subfolders: put each class's files in a subfolder"):
        LabelledTextSource.from_folder(tmp_path / "flat")
    write(tmp_path / "some" / "cat" / "a.txt", "meow")
    write(tmp_path / "some" / "dog" / "a.png", "woof")
    (tmp_path / "some" / "eel").mkdir()
    with pytest.raises(CorpusError, match=r"Class folders \['dog', 'eel'\] in .*some hold no text files"):
        LabelledTextSource.from_folder(tmp_path / "some")
    write(tmp_path / "blank" / "cat" / "a.txt", "  \n")
    with pytest.raises(CorpusError, match="every text file in its class folders is blank"):
        LabelledTextSource.from_folder(tmp_path / "blank")
    write(tmp_path / "one" / "cat" / "a.txt", "meow")
    assert LabelledTextSource.from_folder(tmp_path / "one").class_names == ["cat"]  # one class is fine here


def test_table_errors(tmp_path):
    with pytest.raises(CorpusError, match=r"Labelled table .*nowhere.csv not found: pass the path of a .csv"):
        LabelledTextSource.from_table(tmp_path / "nowhere.csv")
    with pytest.raises(CorpusError, match=r"must be a .csv, .tsv or .jsonl file"):
        LabelledTextSource.from_table(write(tmp_path / "a.txt", "text,label\n"))
    with pytest.raises(CorpusError, match=r"empty.csv is empty: it needs a header row"):
        LabelledTextSource.from_table(write(tmp_path / "empty.csv", ""))
    with pytest.raises(CorpusError, match=r"empty.jsonl is empty"):
        LabelledTextSource.from_table(write(tmp_path / "empty.jsonl", "\n\n"))
    with pytest.raises(CorpusError, match=r"header.csv has no rows with text in column 'text': add some"):
        LabelledTextSource.from_table(write(tmp_path / "header.csv", "text,label\n , 1\n"))
    columns = write(tmp_path / "columns.csv", "id,body,label\n1,x,a\n")
    with pytest.raises(CorpusError, match=r"columns.csv has no column 'text'; its columns: id, body, label. "
                                          r"Pass text_column=\.\.\. \(--text-column"):
        LabelledTextSource.from_table(columns)
    with pytest.raises(CorpusError, match=r"has no column 'y'; its columns: id, body, label. Pass label_column=\.\.\. "
                                          r"\(--label-column"):
        LabelledTextSource.from_table(columns, text_column="body", label_column="y")
    semicolons = write(tmp_path / "semicolons.csv", "text;label\nfine;a\n")
    with pytest.raises(CorpusError, match=r"its columns: text;label. Its header reads as one column: separate the "
                                          r"columns with commas \(tabs in a .tsv\), not ';'"):
        LabelledTextSource.from_table(semicolons)
    unlabelled = write(tmp_path / "unlabelled.csv", "text,label\nfine,a\nalso fine,b\n\"two\nlines\",\n")
    source = LabelledTextSource.from_table(unlabelled)  # the bad row is far down: found when a pass reaches it
    with pytest.raises(CorpusError, match=r"unlabelled.csv, line 4: empty label in column 'label'"):
        source.labels()
    fields = write(tmp_path / "fields.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(CorpusError, match=r"fields.jsonl, line 2 has no field 'label'; its fields: text\. .*--label"):
        LabelledTextSource.from_table(fields).labels()


def test_from_lists_with_and_without_class_names():
    source = LabelledTextSource.from_lists(["good", " ", "bad", "fine"], ["pos", "neg", "neg", "pos"])
    assert source.class_names == ["neg", "pos"] and source.description == "texts"
    assert assert_consistent(source) == ["good", "bad", "fine"]
    np.testing.assert_array_equal(source.labels(), [1, 0, 1])
    named = LabelledTextSource.from_lists(["a", "b", "c"], np.array([2, 0, 2]), class_names=["x", "y", "z"])
    assert named.class_names == ["x", "y", "z"]  # given names keep their order, unused ones included
    np.testing.assert_array_equal(named.labels(), [2, 0, 2])
    by_name = LabelledTextSource.from_lists(["a", "b"], ["z", "x"], class_names=["x", "y", "z"])
    np.testing.assert_array_equal(by_name.labels(), [2, 0])
    with pytest.raises(CorpusError, match="3 texts but 2 labels"):
        LabelledTextSource.from_lists(["a", "b", "c"], [0, 1])
    with pytest.raises(CorpusError, match=r"item 1: label 'w' is neither one of the class names"):
        LabelledTextSource.from_lists(["a", "b"], ["x", "w"], class_names=["x", "y"])
    with pytest.raises(CorpusError, match=r"label 5 is not an index into its 2 class names"):
        LabelledTextSource.from_lists(["a", "b"], [0, 5], class_names=["x", "y"]).labels()
    with pytest.raises(CorpusError, match="holds no labelled documents"):
        LabelledTextSource.from_lists(["", " "], ["a", "b"]).labels()


def test_corpus_excludes_held_out_documents_for_pretraining():
    source = LabelledTextSource.from_lists([f"doc {i}" for i in range(10)], [i % 3 for i in range(10)])
    corpus = source.corpus(exclude=np.array([2, 5, 9]))
    assert isinstance(corpus, TextCorpus)
    assert list(corpus) == [f"doc {i}" for i in (0, 1, 3, 4, 6, 7, 8)]
    assert corpus.description == "texts minus 3 held-out documents"
    assert corpus.content_hash() == TextCorpus.from_texts(list(corpus)).content_hash()


def test_labelled_text_source_dispatches_on_the_spec(tmp_path):
    table = write(tmp_path / "a.csv", "body,y\nx,1\n")
    source = labelled_text_source(str(table), text_column="body", label_column="y")
    assert source.texts([0]) == ["x"] and source.class_names == ["1"]
    write(tmp_path / "folder" / "cat" / "a.txt", "meow")
    assert labelled_text_source(tmp_path / "folder").class_names == ["cat"]
    assert labelled_text_source(source) is source
    with pytest.raises(CorpusError, match="nowhere.csv not found"):
        labelled_text_source(tmp_path / "nowhere.csv")
    with pytest.raises(CorpusError, match=r"'.*notes.txt' is not a table \(by its extension\); accepted: a .csv"):
        labelled_text_source(write(tmp_path / "notes.txt", "x"))
    with pytest.raises(CorpusError, match=r"'.*nowhere' not found; accepted: .*'tfds:NAME:SPLIT'"):
        labelled_text_source(str(tmp_path / "nowhere"))
    with pytest.raises(CorpusError, match=r"Cannot read labelled text from a list"):
        labelled_text_source(["a"])


def test_tfds_spec_parsing(monkeypatch):
    calls = []
    fake = classmethod(lambda cls, name, **kwargs: calls.append((name, kwargs)))
    monkeypatch.setattr(LabelledTextSource, "from_tfds", fake)
    labelled_text_source("tfds:imdb_reviews", data_dir="/data")
    labelled_text_source("tfds:ag_news_subset:test[:10%]", text_column="description", download=False)
    labelled_text_source("tfds:imdb_reviews/plain_text:1.0.0:test")
    assert [(name, kwargs["split"]) for name, kwargs in calls] == [
        ("imdb_reviews", "train"), ("ag_news_subset", "test[:10%]"), ("imdb_reviews/plain_text:1.0.0", "test"),
    ]
    expected = {"split": "train", "text_key": "text", "label_key": "label", "data_dir": "/data", "download": True}
    assert calls[0][1] == expected
    assert calls[1][1]["text_key"] == "description" and calls[1][1]["download"] is False


def test_tfds_imdb_reviews_with_mock_data():
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
    with tfds.testing.mock_data(num_examples=7):
        source = labelled_text_source("tfds:imdb_reviews:test")
        with pytest.raises(CorpusError, match=r"no feature 'stars'; its features: label, text. Pass label_key="):
            LabelledTextSource.from_tfds("imdb_reviews", label_key="stars")
    assert source.class_names == ["neg", "pos"] and source.description == "tfds imdb_reviews (test)"
    texts = assert_consistent(source)
    assert 0 < len(texts) <= 7 and all(isinstance(text, str) and text for text in texts)
    assert set(source.labels()) <= {0, 1}


def test_tfds_that_cannot_load_is_a_clear_error(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds  # a dependency: a broken install fails here, not skips
    calls = []

    def failing_load(name, **kwargs):
        calls.append(kwargs)
        raise AssertionError(f"Dataset {name}: could not find data in {kwargs['data_dir']}.")  # as TFDS says it

    monkeypatch.setattr(tfds, "load", failing_load)
    offline = r"'imdb_reviews' \(split 'train'\) could not be loaded offline"
    with pytest.raises(DataNotFoundError, match=offline) as error:
        LabelledTextSource.from_tfds("imdb_reviews", data_dir=tmp_path)
    assert "tfds build imdb_reviews" in str(error.value)
    assert calls[0]["download"] is False and calls[0]["data_dir"] == tmp_path
