import json

import keras_hub
import pytest

from keras_pretrain import cli
from keras_pretrain.data import TextCorpus, train_word_piece_tokenizer
from keras_pretrain.models import ViTEncoder
from tests.conftest import write_image_folder, write_labelled_csv

SMALL = ["--frozen", "--labels-per-class", "2", "--set", "evaluation.val_per_class=2",
         "evaluation.curve_labels_per_class=[1, 2]", "evaluation.curve_seeds=2"]


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


def saved_encoder(path, seed):
    import keras

    keras.utils.set_random_seed(seed)
    encoder = ViTEncoder(image_size=20, channels=3, patch_size=5, hidden_dim=16, depth=1, num_heads=2)
    encoder.build((None, 20, 20, 3))
    encoder.save(path)
    return path


def test_evaluate_compares_saved_image_encoders_on_a_folder(capsys, tmp_path):
    folder = write_image_folder(tmp_path / "shapes", per_class=14)
    encoders = [str(saved_encoder(tmp_path / f"encoder{i}.keras", i)) for i in range(2)]
    assert cli.main(["evaluate", *encoders, "--data", str(folder), "--output", str(tmp_path / "out"), *SMALL]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["encoders"]) == set(encoders)
    for result in results["encoders"].values():
        assert {"probe_accuracy", "knn_accuracy", "baseline_accuracy", "pretrained_accuracy"} <= set(result)
        assert "finetune_accuracy" not in result  # --frozen
    assert set(results["label_curve"]) == {"baseline", *encoders, "random init"}
    assert set(results["label_curve"]["random init"]["kNN"]) == {"1", "2"}
    assert (tmp_path / "out" / "label_curve.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert f"== {encoders[1]}" in out and "random init, linear probe" in out


def test_evaluate_fine_tunes_by_default(tmp_path):
    folder = write_image_folder(tmp_path / "shapes", per_class=14)
    encoder = str(saved_encoder(tmp_path / "encoder.keras", 0))
    small = [option for option in SMALL if option != "--frozen"] + ["evaluation.finetune_epochs=1"]
    assert cli.main(["evaluate", encoder, "--data", str(folder), "--output", str(tmp_path / "out"), *small]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())["encoders"][encoder]
    assert 0.0 <= result["finetune_accuracy"] <= 1.0
    assert set(result["validation_accuracy"]) == {"scratch", "linear probe", "kNN", "fine-tune"}  # chosen among these


@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_evaluate_takes_a_text_preset_and_reports_bad_encoders(capsys, tmp_path):
    table = write_labelled_csv(tmp_path / "labelled.csv", per_class=14)
    tokenizer = train_word_piece_tokenizer(TextCorpus.from_files(table, text_column="text"), 80)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32, max_sequence_length=32)
    backbone.save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    assert cli.main(["evaluate", str(tmp_path / "preset"), "--data", str(table), "--output", str(tmp_path / "out"),
                     *SMALL]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["config"]["backbone"]["sequence_length"] == 32
    assert 0.0 <= results["encoders"][str(tmp_path / "preset")]["knn_accuracy"] <= 1.0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "nothing.keras"), "--data", str(table)]) == 1
    assert "does not exist: pass an encoder.keras file or a preset directory" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")  # refused before the encoders are evaluated, not after
    assert cli.main(["evaluate", str(tmp_path / "preset"), "--data", str(table),
                     "--output", str(tmp_path / "a_file")]) == 1
    assert f"The output directory {tmp_path / 'a_file'} is a file: pass another --output." in capsys.readouterr().err


def test_encoders_that_cannot_be_compared_are_refused_before_any_data_is_read(tmp_path):
    from keras_pretrain.models import ImageClassifier
    from keras_pretrain.pipelines.evaluate import evaluate_encoders

    encoder = saved_encoder(tmp_path / "encoder.keras", 0)
    classifier = ImageClassifier(ViTEncoder(image_size=20, channels=3, patch_size=5, hidden_dim=16, depth=1,
                                            num_heads=2), 2)
    classifier.build((None, 20, 20, 3))
    classifier.save(tmp_path / "classifier.keras")
    grey = ViTEncoder(image_size=20, channels=1, patch_size=5, hidden_dim=16, depth=1, num_heads=2)
    grey.build((None, 20, 20, 1))
    grey.save(tmp_path / "grey.keras")
    (tmp_path / "empty").mkdir()
    no_data = str(tmp_path / "no such data")  # never reached: each case fails first
    for paths, message in [
        ([tmp_path / "classifier.keras"], r"holds ImageClassifier, not ViTEncoder: pass an image run's encoder"),
        ([encoder, tmp_path / "grey.keras"], r"The encoders take different images \[\(20, 1\), \(20, 3\)\]"),
        ([tmp_path / "empty"], r"is not a keras-hub preset \(no config.json\): pass a text run's preset/"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            evaluate_encoders(paths, no_data)
