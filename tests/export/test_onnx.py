import numpy as np
import onnx
import onnxruntime
import pytest
from keras import ops

from keras_pretrain.export import ExportError
from keras_pretrain.export import onnx as onnx_export
from keras_pretrain.export.onnx import export_onnx
from keras_pretrain.models import ImageClassifier, ViTEncoder


def test_onnx_graph_computes_what_keras_computes_at_any_batch_size(classifier, images, tmp_path):
    path = export_onnx(classifier, tmp_path / "clf.onnx", samples=images)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["clf.onnx"]  # no staging left
    session = onnxruntime.InferenceSession(str(path))
    assert session.get_inputs()[0].type == "tensor(uint8)"
    batch = np.concatenate([images, images[:5]])  # a batch size it was never traced with
    probabilities, class_index, embeddings = session.run(None, {"images": batch})
    expected = ops.convert_to_numpy(ops.softmax(classifier(batch), axis=-1))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert class_index.tolist() == expected.argmax(-1).tolist()
    np.testing.assert_allclose(embeddings, ops.convert_to_numpy(classifier.embed(batch)), atol=1e-5)
    report = classifier.onnx_report
    assert max(report["max_abs_diff"].values()) <= 1e-5 and report["bytes"] == path.stat().st_size
    # The verification it passed refuses the same graph against another model's answers.
    other = {"probabilities": np.roll(expected, 1, axis=1), "class_index": expected.argmax(-1),
             "embeddings": ops.convert_to_numpy(classifier.embed(batch))}
    with pytest.raises(ExportError, match=r"ONNX verification failed: probabilities: max abs diff .* > 1e-05$"):
        onnx_export.verify_onnx(path, batch, other, atol=1e-5)


def test_failed_onnx_verification_keeps_the_existing_file(classifier, images, tmp_path, monkeypatch):
    path = tmp_path / "clf.onnx"
    path.write_bytes(b"a good earlier export")

    def write_a_wrong_graph(model, staged, samples):  # a valid ONNX graph that is not the classifier
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["images"], ["copy"])], "wrong",
            [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, [None, 28, 28, 1])],
            [onnx.helper.make_tensor_value_info("copy", onnx.TensorProto.UINT8, [None, 28, 28, 1])],
        )
        onnx.save(onnx.helper.make_model(graph), str(staged))

    monkeypatch.setattr(onnx_export, "write_staged", write_a_wrong_graph)
    with pytest.raises(ExportError, match="returns \\['copy'\\]"):
        export_onnx(classifier, path, samples=images[:4])
    assert path.read_bytes() == b"a good earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["clf.onnx"]


@pytest.mark.parametrize(
    "name, message", [("clf.pt", "must end in .onnx"), ("missing/clf.onnx", "does not exist")]
)
def test_bad_onnx_paths_are_refused_clearly(classifier, tmp_path, name, message):
    with pytest.raises(ExportError, match=message):
        export_onnx(classifier, tmp_path / name)


def test_a_flatten_pooling_classifier_exports_at_any_batch_size(images, tmp_path):
    model = ImageClassifier(ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2), 3, pooling="flatten")
    model(images)
    path = export_onnx(model, tmp_path / "flat.onnx", samples=images)
    batch = np.concatenate([images, images[:3]])  # 11: the flattening reshape must not fix the batch size
    probabilities, _, embeddings = onnxruntime.InferenceSession(str(path)).run(None, {"images": batch})
    np.testing.assert_allclose(probabilities, ops.convert_to_numpy(ops.softmax(model(batch), axis=-1)), atol=1e-5)
    assert embeddings.shape == (11, 16 * 16)
