import json

import numpy as np
import pytest
from keras import ops

from keras_pretrain.export import ExportError, export_saved_model, next_version
from keras_pretrain.export import saved_model as saved_model_module
from keras_pretrain.models import ImageClassifier, ViTEncoder
from tests.conftest import run_python
from tests.export.conftest import CLASS_NAMES


def test_export_serves_what_keras_computes_in_a_fresh_tensorflow_process(classifier, images, tmp_path):
    path = export_saved_model(classifier, "clf", root=tmp_path, sample_images=images)
    assert path == tmp_path / "clf" / "1" and (path / "saved_model.pb").is_file()
    # An independent reload, with TensorFlow alone, at another batch size.
    batch = np.concatenate([images, images[:3]])
    np.save(tmp_path / "batch.npy", batch)
    code = f"""
import json, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(path)!r})
x = tf.constant(np.load({str(tmp_path / 'batch.npy')!r}))
out = m.signatures["serving_default"](images=x)
emb = m.signatures["embed"](images=x)["embeddings"]
print(json.dumps({{"p": out["probabilities"].numpy().tolist(), "i": out["class_index"].numpy().tolist(),
  "n": [s.decode() for s in out["class_name"].numpy()], "e": emb.numpy().tolist(),
  "dtype": m.signatures["serving_default"].structured_input_signature[1]["images"].dtype.name}}))
"""
    result = run_python(code, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.splitlines()[-1])
    expected = ops.convert_to_numpy(ops.softmax(classifier(batch), axis=-1))
    assert np.max(np.abs(np.array(served["p"]) - expected)) <= 1e-5
    assert served["i"] == expected.argmax(-1).tolist()
    assert served["n"] == [CLASS_NAMES[i] for i in served["i"]]
    np.testing.assert_allclose(served["e"], ops.convert_to_numpy(classifier.embed(batch)), atol=1e-5)
    assert served["dtype"] == "uint8"
    report = classifier.export_report
    assert set(report["signatures"]) >= {"serving_default", "classify", "embed"}
    assert report["signatures"]["serving_default"]["inputs"]["images"] == {"dtype": "uint8", "shape": [None, 28, 28, 1]}
    assert max(report["max_abs_diff"].values()) <= 1e-5


def test_versions_count_up_and_existing_ones_are_never_overwritten(classifier, images, tmp_path):
    assert next_version(tmp_path / "clf") == 1
    first = export_saved_model(classifier, "clf", root=tmp_path, sample_images=images[:2])
    second = export_saved_model(classifier, "clf", root=tmp_path, sample_images=images[:2])
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(classifier, "clf", root=tmp_path, version=1)


def test_failed_verification_leaves_nothing(classifier, images, tmp_path, monkeypatch):
    good = export_saved_model(classifier, "clf", root=tmp_path, sample_images=images[:2])
    before = sorted(p.name for p in good.rglob("*"))

    def broken(*args, **kwargs):
        raise ExportError("injected verification failure")

    monkeypatch.setattr(saved_model_module, "verify_in_fresh_process", broken)
    with pytest.raises(ExportError, match="injected"):
        export_saved_model(classifier, "clf", root=tmp_path, sample_images=images[:2])
    assert sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["1"]  # no version 2, no staging dir
    assert sorted(p.name for p in good.rglob("*")) == before
    with pytest.raises(ExportError, match="injected"):  # a first export: not even an empty model folder stays
        export_saved_model(classifier, "other", root=tmp_path, sample_images=images[:2])
    assert not (tmp_path / "other").exists()


def test_verification_refuses_other_outputs_classes_or_a_missing_signature(classifier, images, tmp_path, monkeypatch):
    path = export_saved_model(classifier, "clf", root=tmp_path, sample_images=images[:4])
    np.save(tmp_path / "inputs.npy", images[:4])
    served = saved_model_module.serving_outputs(classifier, images[:4])
    outputs = {k: ops.convert_to_numpy(v) for k, v in served.items()}
    # What the served model would answer if it were another model: every class moved one on.
    outputs["probabilities"] = np.roll(outputs["probabilities"], 1, axis=1)
    outputs["class_index"] = (outputs["class_index"] + 1) % len(CLASS_NAMES)
    np.savez(tmp_path / "expected.npz", **outputs)
    monkeypatch.setitem(saved_model_module.SIGNATURES, "explain", ("attributions",))
    with pytest.raises(ExportError) as refused:
        saved_model_module.verify_in_fresh_process(path, tmp_path / "inputs.npy", tmp_path / "expected.npz")
    assert "missing signature explain" in str(refused.value)
    assert "serving_default/probabilities: max abs diff" in str(refused.value)
    assert "predicted classes differ" in str(refused.value)


def test_unbuilt_model_and_unwritable_root_are_clear_errors(tmp_path, images, classifier):
    unbuilt = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3)
    with pytest.raises(ExportError, match="not built"):
        export_saved_model(unbuilt, "clf", root=tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="Cannot write under"):
        export_saved_model(classifier, "clf", root=blocker)


def test_a_flatten_pooling_classifier_exports_and_verifies(images, tmp_path):
    model = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, pooling="flatten")
    model(images)
    path = export_saved_model(model, "flat", root=tmp_path, sample_images=images[:3])
    assert (path / "saved_model.pb").is_file()
    assert max(model.export_report["max_abs_diff"].values()) <= 1e-5
