"""Verified, atomic SavedModel export in TF Serving layout, from every backend.

`export_saved_model` writes `ROOT/NAME/VERSION/` with three signatures:

- `serving_default`: raw uint8 images of any batch size -> `probabilities`,
  `class_index` and `class_name`;
- `classify`: the same without the strings;
- `embed`: the encoder's pooled embeddings.

It writes into a temporary directory beside the target, reloads the result in
a fresh process with TensorFlow alone, compares every signature with the Keras
model, and only then moves it into place, so a failed export never leaves a
partial version and never touches earlier ones.

TensorFlow and JAX write the archive in-process. PyTorch cannot (Keras's
torch route needs torch_xla), so the model is saved as a `.keras` file,
rebuilt under the TensorFlow backend in a subprocess, and written there; its
weights are backend-neutral, so the export computes what the torch model does.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import ops

SIGNATURES = {
    "serving_default": ("probabilities", "class_index", "class_name"),
    "classify": ("probabilities", "class_index"),
    "embed": ("embeddings",),
}


class ExportError(RuntimeError):
    """An export failed; nothing was left at the target."""


def next_version(model_dir):
    """The next free TF Serving version number under `model_dir` (1 if none)."""
    versions = [int(p.name) for p in Path(model_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def serving_outputs(model, images):
    """What the `classify` and `embed` signatures must return, from the Keras model."""
    embeddings = model.embed(images)
    probabilities = ops.softmax(model.head(embeddings), axis=-1)
    return {
        "probabilities": probabilities,
        "class_index": ops.cast(ops.argmax(probabilities, axis=-1), "int32"),
        "embeddings": embeddings,
    }


def write_archive(model, path):
    """Write `model`'s serving signatures as a SavedModel at `path` (TF or JAX backend)."""
    import tensorflow as tf

    encoder = model.encoder
    spec = tf.TensorSpec((None, encoder.image_size, encoder.image_size, encoder.channels), tf.uint8, name="images")
    archive = keras.export.ExportArchive()
    archive.track(model)
    classify = archive.add_endpoint(
        "classify",
        lambda images: {k: v for k, v in serving_outputs(model, images).items() if k != "embeddings"},
        input_signature=[spec],
    )
    archive.add_endpoint("embed", lambda images: {"embeddings": model.embed(images)}, input_signature=[spec])
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    class_names = tf.constant(names)

    @tf.function(input_signature=[spec])
    def serve(images):
        outputs = classify(images)
        return {**outputs, "class_name": tf.gather(class_names, outputs["class_index"])}

    archive.add_endpoint("serving_default", serve)
    archive.write_out(str(path), verbose=False)


def export_saved_model(model, name, root="saved_models", version=None, sample_images=None, atol=1e-5):
    """Export a built `ImageClassifier` to `root/name/version/` and verify it; return the path.

    Args:
        model: a built classifier with `encoder`, `embed`, `head`, `class_names`.
        name: the model's folder name under `root`.
        root: the TF Serving model base path.
        version: an integer; default the next free one. An existing version is
            an error, never overwritten.
        sample_images: uint8 images to verify with; default 8 random ones.
        atol: largest absolute difference allowed between the reloaded
            SavedModel and the Keras model, on every output.

    Example:
    >>> path = export_saved_model(classifier, "mae_fashion_mnist", sample_images=x_test[:64])
    >>> str(path)
    'saved_models/mae_fashion_mnist/1'
    """
    if not getattr(model, "built", False) or not model.weights:
        raise ExportError("The model is not built: call it on a batch of images (or fit it) before exporting.")
    model_dir = Path(root) / name
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer; got {version}.")
    target = model_dir / str(version)
    if target.exists():
        raise ExportError(f"{target} already exists; export to a new version or remove it first.")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{version}-", dir=model_dir))
    except OSError as error:
        raise ExportError(f"Cannot write under {model_dir}: {error}. Choose a writable export root.") from error

    encoder = model.encoder
    if sample_images is None:
        rng = np.random.default_rng(0)
        sample_images = rng.integers(0, 256, (8, encoder.image_size, encoder.image_size, encoder.channels))
    sample_images = np.asarray(sample_images, dtype="uint8")
    model(sample_images[:1])  # on JAX, predict alone does not mark a model as called
    expected = {k: ops.convert_to_numpy(v) for k, v in serving_outputs(model, sample_images).items()}

    work = staging / "work"
    saved_model = staging / "saved_model"
    try:
        work.mkdir()
        if keras.backend.backend() == "torch":
            _write_archive_in_subprocess(model, work, saved_model)
        else:
            write_archive(model, saved_model)
        np.savez(work / "samples.npz", images=sample_images, **expected)
        report = verify_in_fresh_process(saved_model, work / "samples.npz", atol=atol)
        os.replace(saved_model, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    model.export_report = report
    return target


def _run_module(args, backend=None):
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    result = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True)
    if result.returncode:
        raise ExportError(f"`python -m {' '.join(map(str, args))}` failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _write_archive_in_subprocess(model, work, saved_model):
    keras_file = work / "model.keras"
    model.save(keras_file)
    _run_module(["keras_pretrain.export.saved_model", "write", keras_file, saved_model], backend="tensorflow")


def verify_in_fresh_process(saved_model, samples, atol=1e-5):
    """Reload `saved_model` with TensorFlow alone in a new process and compare with `samples`.

    Returns the report: signatures with their inputs and outputs, and the
    largest absolute difference per output. Raises `ExportError` if any output
    differs by more than `atol`, a predicted class differs, or a signature is missing.
    """
    report = json.loads(_run_module(["keras_pretrain.export.verify", saved_model, samples]).splitlines()[-1])
    problems = [f"missing signature {s}" for s in SIGNATURES if s not in report["signatures"]]
    problems += [f"{output}: max abs diff {diff:.3g} > {atol}" for output, diff in report["max_abs_diff"].items() if diff > atol]
    if not report["same_class_index"]:
        problems.append("predicted classes differ from the Keras model's")
    if problems:
        raise ExportError("Export verification failed: " + "; ".join(problems))
    return report


if __name__ == "__main__":  # python -m keras_pretrain.export.saved_model write MODEL.keras OUT_DIR
    import keras_pretrain.models  # noqa: F401  (registers the classes the .keras file names)

    _, command, keras_file, out_dir = sys.argv
    # Serving needs the weights, not the training state: skip the optimizer.
    write_archive(keras.saving.load_model(keras_file, compile=False), out_dir)
