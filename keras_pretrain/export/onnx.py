"""ONNX export of image classifiers, verified with onnxruntime.

The graph takes uint8 images of any batch size and returns `probabilities`,
`class_index` and `embeddings`, the outputs of the SavedModel's signatures.

Only one route works here for every backend: PyTorch's `torch.export` +
`torch.onnx` (dynamo) exporter. Keras's own `format="onnx"` fails on the
others (TensorFlow's tf2onnx emits an `Erfc` op for exact GELU that
onnxruntime rejects; JAX needs jax2onnx and flax). So on TensorFlow and JAX
the model is saved as a `.keras` file and rebuilt under PyTorch in a
subprocess: the weights are backend-neutral, and the verification against
the original model proves the graph computes what it computes.

Text classifiers are not supported: their serving input is raw strings, and
ONNX has no WordPiece tokenizer; serve them with the SavedModel.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_pretrain.export.saved_model import ExportError, default_samples, run_module, serving_outputs, takes_text

OUTPUTS = ("probabilities", "class_index", "embeddings")


def write_onnx(model, path, example_images):
    """Trace `model` with `torch.export` and write the ONNX graph to `path` (PyTorch backend only)."""
    import torch

    class Serving(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, images):
            outputs = serving_outputs(self.classifier, images)
            return tuple(outputs[name] for name in OUTPUTS)

    program = torch.onnx.export(
        Serving(model).eval(),
        (torch.from_numpy(np.asarray(example_images, dtype="uint8")),),
        input_names=["images"],
        output_names=list(OUTPUTS),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))


def export_onnx(model, path, samples=None, atol=1e-5):
    """Write an image classifier as a verified ONNX file at `path`; return the path.

    The graph is written beside `path` under a temporary name, run with
    onnxruntime on `samples` (and on a smaller batch, to prove the batch size
    is free), compared with the Keras model, and only then moved to `path`;
    a failed export leaves nothing and never replaces an existing file.
    Sets `model.onnx_report` (max abs diff per output, seconds, bytes).

    Args:
        model: a built `ImageClassifier`.
        path: the `.onnx` file to write.
        samples: uint8 images to verify with; default 8 random ones.
        atol: largest absolute difference allowed on every output.

    Example:
    >>> export_onnx(classifier, "classifier.onnx", samples=x_test[:64])
    >>> import onnxruntime
    >>> onnxruntime.InferenceSession("classifier.onnx").run(None, {"images": x_test[:2]})
    """
    path = check_onnx_target(model, path)
    samples = np.asarray(default_samples(model) if samples is None else samples, dtype="uint8")
    expected = {k: ops.convert_to_numpy(v) for k, v in serving_outputs(model, samples).items()}

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".partial-onnx-", dir=path.parent) as staging:
        staged = Path(staging) / path.name
        write_staged(model, staged, samples)
        report = verify_onnx(staged, samples, expected, atol)
        os.replace(staged, path)
    report.update(seconds=time.perf_counter() - start, bytes=path.stat().st_size)
    model.onnx_report = report
    return path


def check_onnx_target(model, path):
    """`path` as a `Path`, or `ExportError` if `model` cannot go to an ONNX file there (checked before any work)."""
    if takes_text(model):
        raise ExportError(
            "ONNX export takes image classifiers only: a text classifier's serving input is raw strings and ONNX "
            "has no WordPiece tokenizer. Serve its SavedModel (export_saved_model, or keras-pretrain export "
            "without --onnx)."
        )
    if not getattr(model, "built", False) or not model.weights:
        raise ExportError("The model is not built: call it on a batch of images (or fit it) before exporting.")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"The ONNX file name must end in .onnx; got {path}.")
    if not path.parent.is_dir():
        raise ExportError(f"Directory {path.parent} does not exist; create it or choose another path.")
    return path


def verify_onnx(path, samples, expected, atol):
    """Run `path` with onnxruntime; raise `ExportError` unless it matches `expected` within `atol`."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError("Verifying an ONNX export needs onnxruntime: pip install 'keras-pretrain[onnx]'.") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    if names != list(OUTPUTS):
        raise ExportError(f"The ONNX graph returns {names}; expected {list(OUTPUTS)}.")
    diffs = {name: 0.0 for name in OUTPUTS}
    for batch in (samples, samples[:3]):
        for name, value in zip(names, session.run(None, {"images": batch})):
            diffs[name] = max(diffs[name], float(np.max(np.abs(value - expected[name][: len(batch)]))))
    problems = [f"{name}: max abs diff {diff:.3g} > {atol}" for name, diff in diffs.items() if diff > atol]
    if problems:
        raise ExportError("ONNX verification failed: " + "; ".join(problems))
    return {"max_abs_diff": diffs}


def write_staged(model, path, samples):
    """Write the graph at `path`: directly on PyTorch, else rebuilt under PyTorch in a subprocess."""
    if keras.backend.backend() == "torch":
        return write_onnx(model, path, samples)
    keras_file, samples_file = path.with_suffix(".keras"), path.with_suffix(".npy")
    model.save(keras_file)
    np.save(samples_file, samples)
    run_module(["keras_pretrain.export.onnx", keras_file, path, samples_file], backend="torch")


if __name__ == "__main__":  # KERAS_BACKEND=torch python -m keras_pretrain.export.onnx MODEL.keras OUT.onnx SAMPLES.npy
    import keras_pretrain.models  # noqa: F401  (registers the classes the .keras file names)

    _, keras_file, out_path, samples_file = sys.argv
    write_onnx(keras.saving.load_model(keras_file, compile=False), out_path, np.load(samples_file))
