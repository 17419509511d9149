import json
import re

import numpy as np
import pytest
from keras import ops

from keras_pretrain import cli
from keras_pretrain.export import export_saved_model
from keras_pretrain.export.serve_check import resolve_version, serve_check
from keras_pretrain.models import ImageClassifier, ViTEncoder

IMAGES = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1)).astype("uint8")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    model = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, class_names=["a", "b", "c"])
    model(IMAGES)
    model.save(root / "classifier.keras")
    export_saved_model(model, "clf", root=root, sample_images=IMAGES)
    return root, model


def test_answers_a_rest_request_like_tf_serving(exported):
    root, model = exported
    request = {"instances": [{"images": image.tolist()} for image in IMAGES]}
    signatures, _, response = serve_check(root / "clf", request)
    assert signatures["serving_default"]["inputs"] == {"images": {"dtype": "uint8", "shape": [None, 28, 28, 1]}}
    rows = response["predictions"]
    expected = ops.convert_to_numpy(ops.softmax(model(IMAGES), axis=-1))
    assert len(rows) == 3
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)
    assert [r["class_name"] for r in rows] == [["a", "b", "c"][i] for i in expected.argmax(-1)]
    bare = {"instances": [image.tolist() for image in IMAGES]}  # one input: instances may be the bare values
    assert serve_check(root / "clf", bare)[2] == response


@pytest.mark.parametrize("request_body, message", [
    ({"instances": [np.zeros((28, 28)).tolist()]}, r"must have shape \[None, 28, 28, 1\]"),
    ({"instances": [np.full((28, 28, 1), 0.5).tolist()]}, "must hold integers"),
    ({"instances": [np.full((28, 28, 1), 300).tolist()]}, r"\[0, 255\]"),
    ({"inputs": []}, r'\{"instances": \[\.\.\.\]\}'),
    ({"instances": [{"pixels": 1}]}, "must give the inputs"),
])
def test_bad_requests_are_clear_errors(exported, request_body, message):
    with pytest.raises(ValueError, match=message):
        serve_check(exported[0] / "clf", request_body)


def test_versions_resolve_to_the_newest(exported, tmp_path):
    root, _ = exported
    assert resolve_version(root / "clf") == root / "clf" / "1"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_version(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        resolve_version(root / "clf", version=7)


def test_cli_export_and_serve_check(exported, tmp_path, capsys):
    root, _ = exported
    assert cli.main(["export", str(root / "classifier.keras"), "--name", "clf", "--export-root", str(tmp_path)]) == 0
    assert "verified in a fresh process" in capsys.readouterr().out
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [IMAGES[0].tolist()]}))
    assert cli.main(["serve-check", str(tmp_path / "clf"), "--request", str(request)]) == 0
    out = capsys.readouterr().out
    assert "signature serving_default" in out and "signature embed" in out
    assert len(json.loads(out.splitlines()[-1])["predictions"]) == 1
    request.write_text("{not json")
    assert cli.main(["serve-check", str(tmp_path / "clf"), "--request", str(request)]) == 1
    assert "is not valid JSON" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing.keras"), "--name", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_bad_exports_and_checks_before_writing_anything(exported, tmp_path, capsys):
    root, model = exported
    model.encoder.save(tmp_path / "encoder.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    out = tmp_path / "out"
    classifier = [str(root / "classifier.keras"), "--name", "m"]
    for arguments, message in [
        ([*classifier, "--onnx", str(tmp_path / "model.txt")], "must end in .onnx"),
        ([*classifier, "--onnx", str(tmp_path / "no" / "m.onnx")], "no does not exist"),
        ([str(tmp_path / "encoder.keras"), "--name", "m"], "A ViTEncoder is not a classifier .*: export a fine-tuned"),
        ([str(tmp_path / "junk.keras"), "--name", "m"], r"junk.keras cannot be read as a Keras model \(.*\): pass a"),
        ([str(root / "classifier.keras"), "--name", ""], "must be a folder name"),
    ]:
        assert cli.main(["export", *arguments, "--export-root", str(out)]) == 1
        error = capsys.readouterr().err
        assert re.search(message, error) and len(error.strip().splitlines()) == 1, error
        assert not out.exists()  # no version, no staging directory
    assert cli.main(["serve-check", str(root / "clf"), "--signature", "classify"]) == 0  # without --request: zeros
    response = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(response["predictions"]) == 2 and set(response["predictions"][0]) == {"probabilities", "class_index"}
    assert cli.main(["serve-check", str(root / "clf"), "--signature", "explain"]) == 1
    assert "No signature 'explain'; the model has classify, embed, serving_default" in capsys.readouterr().err
    assert cli.main(["serve-check", str(root / "clf"), "--request", str(tmp_path / "request.json")]) == 1
    assert "request.json does not exist: pass a JSON file" in capsys.readouterr().err
