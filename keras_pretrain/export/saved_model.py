"""Verified, atomic SavedModel export in TF Serving layout, from every backend.

`export_saved_model` writes `ROOT/NAME/VERSION/` with three signatures, on
the model's raw input (any batch size): uint8 images for an
`ImageClassifier`, UTF-8 strings for a model with a `preprocess` method
(`TextClassifier`, whose tokenizer goes inside the SavedModel):

- `serving_default`: raw inputs -> `probabilities`, `class_index` and `class_name`;
- `classify`: the same without the strings;
- `embed`: the encoder's pooled embeddings.

A text model also gets `classify_token_ids` and `embed_token_ids`, the same
on token ids, for clients that tokenize themselves.

It writes into a temporary directory beside the target, reloads the result in
a fresh process with TensorFlow alone, compares every signature with the Keras
model, and only then moves it into place, so a failed export never leaves a
partial version and never touches earlier ones.

TensorFlow and JAX write the archive in-process. PyTorch cannot (Keras's
torch route needs torch_xla), so the model is saved as a `.keras` file,
rebuilt under the TensorFlow backend in a subprocess, and written there; its
weights are backend-neutral, so the export computes what the torch model does.
"""

import contextlib
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
    """An export failed; nothing was left at the target.

    Example:
    >>> export_saved_model(classifier, "mae_images", version=1)  # version 1 exists already
    Traceback (most recent call last):
    ExportError: saved_models/mae_images/1 already exists; export to a new version or remove it first.
    """


def next_version(model_dir):
    """The next free TF Serving version number under `model_dir` (1 if none).

    Example:
    >>> next_version("saved_models/mae_fashion_mnist")  # holds 1/ and 2/
    3
    """
    versions = [int(p.name) for p in Path(model_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def serving_outputs(model, features):
    """What the `classify` and `embed` signatures must return, from the Keras model's input `features`."""
    embeddings = model.embed(features)
    probabilities = ops.softmax(model.head(embeddings), axis=-1)
    return {
        "probabilities": probabilities,
        "class_index": ops.cast(ops.argmax(probabilities, axis=-1), "int32"),
        "embeddings": embeddings,
    }


def takes_text(model):
    """Whether the SavedModel takes strings: the model has a `preprocess` method from strings to its inputs."""
    return hasattr(model, "preprocess")


def serving_input_spec(model):
    """The raw input of every serving signature: strings `(batch,)` for a text model, else uint8 images."""
    import tensorflow as tf

    if takes_text(model):
        return tf.TensorSpec((None,), tf.string, name="texts")
    encoder = model.encoder
    return tf.TensorSpec((None, encoder.image_size, encoder.image_size, encoder.channels), tf.uint8, name="images")


def default_samples(model):
    """Inputs to verify an export with when none are given: 8 random images, or a few strings."""
    if takes_text(model):
        return np.array([text.encode() for text in ("", "a short text", "café and naïve words " * 20)])
    encoder = model.encoder
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (8, encoder.image_size, encoder.image_size, encoder.channels)).astype("uint8")


def write_archive(model, path):
    """Write `model`'s serving signatures as a SavedModel at `path` (TF or JAX backend).

    The model's own computation is added as Keras endpoints (converted by
    jax2tf on JAX); for a text model those take token ids, and `tf.function`s
    that run the tokenizer first wrap them, since jax2tf cannot convert
    string ops.
    """
    import tensorflow as tf

    raw_spec = serving_input_spec(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    classify_fn = lambda features: {k: v for k, v in serving_outputs(model, features).items() if k != "embeddings"}
    embed_fn = lambda features: {"embeddings": model.embed(features)}
    if takes_text(model):
        feature_spec = {  # the preprocessor's outputs, any batch size; the call also builds a reloaded one
            name: tf.TensorSpec((None, *value.shape[1:]), tf.int32, name=name)
            for name, value in model.preprocess(tf.constant([""])).items()
        }
        archive.track(model.preprocessor)
        classify_ids = archive.add_endpoint("classify_token_ids", classify_fn, input_signature=[feature_spec])
        embed_ids = archive.add_endpoint("embed_token_ids", embed_fn, input_signature=[feature_spec])
        as_ids = lambda texts: {k: tf.cast(v, tf.int32) for k, v in model.preprocess(texts).items()}
        classify = tf.function(lambda texts: classify_ids(as_ids(texts)), input_signature=[raw_spec])
        embed = tf.function(lambda texts: embed_ids(as_ids(texts)), input_signature=[raw_spec])
        archive.add_endpoint("classify", classify)
        archive.add_endpoint("embed", embed)
    else:
        classify = archive.add_endpoint("classify", classify_fn, input_signature=[raw_spec])
        archive.add_endpoint("embed", embed_fn, input_signature=[raw_spec])
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    class_names = tf.constant(names)

    @tf.function(input_signature=[raw_spec])
    def serve(inputs):
        outputs = classify(inputs)
        return {**outputs, "class_name": tf.gather(class_names, outputs["class_index"])}

    archive.add_endpoint("serving_default", serve)
    archive.write_out(str(path), verbose=False)


def export_saved_model(
    model, name, root="saved_models", version=None, samples=None, atol=1e-5, sample_images=None
):
    """Export a built classifier to `root/name/version/` and verify it; return the path.

    Args:
        model: a built `ImageClassifier` or `TextClassifier` (anything with
            `embed`, `head`, `class_names`, and an image `encoder` or a
            `preprocess` method from strings).
        name: the model's folder name under `root`.
        root: the TF Serving model base path.
        version: an integer; default the next free one. An existing version is
            an error, never overwritten.
        samples: raw inputs to verify with (uint8 images, or strings for a
            text model); default `default_samples(model)`.
        atol: largest absolute difference allowed between the reloaded
            SavedModel and the Keras model, on every output.
        sample_images: the former name of `samples`.

    Example:
    >>> path = export_saved_model(classifier, "mae_fashion_mnist", samples=x_test[:64])
    >>> str(path)
    'saved_models/mae_fashion_mnist/1'
    >>> export_saved_model(text_classifier, "bert_wordnet", samples=test_glosses[:200])
    """
    missing = [attribute for attribute in ("embed", "head", "class_names") if not hasattr(model, attribute)]
    if missing:
        raise ExportError(f"A {type(model).__name__} is not a classifier (it has no {', '.join(missing)}): export "
                          "a fine-tuned classifier, such as a run's classifiers/*.keras.")
    if not getattr(model, "built", False) or not model.weights:
        raise ExportError("The model is not built: call it on a batch of inputs (or fit it) before exporting.")
    if not name or Path(name).name != name or name in (".", ".."):
        raise ExportError(f"The export name must be a folder name (TF Serving's model name); got {name!r}.")
    model_dir = Path(root) / name
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer; got {version}.")
    target = model_dir / str(version)
    if target.exists():
        raise ExportError(f"{target} already exists; export to a new version or remove it first.")

    samples = sample_images if samples is None else samples
    if samples is None:
        samples = default_samples(model)
    if takes_text(model):
        samples = np.array([s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in samples])
        features = model.preprocess(samples.tolist())
    else:
        samples = features = np.asarray(samples, dtype="uint8")
    model(features)  # on JAX, predict alone does not mark a model as called
    expected = {k: ops.convert_to_numpy(v) for k, v in serving_outputs(model, features).items()}

    new_model_dir = not model_dir.exists()
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{version}-", dir=model_dir))
    except OSError as error:
        raise ExportError(f"Cannot write under {model_dir}: {error}. Choose a writable export root.") from error
    work = staging / "work"
    saved_model = staging / "saved_model"
    try:
        work.mkdir()
        if keras.backend.backend() == "torch":
            _write_archive_in_subprocess(model, work, saved_model)
        else:
            write_archive(model, saved_model)
        np.save(work / "inputs.npy", samples)
        np.savez(work / "expected.npz", **expected)
        report = verify_in_fresh_process(saved_model, work / "inputs.npy", work / "expected.npz", atol=atol)
        os.replace(saved_model, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if new_model_dir:  # a first export that failed leaves no empty model folder either
            with contextlib.suppress(OSError):
                model_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    model.export_report = report
    return target


def run_module(args, backend=None):
    """Run `python -m ARGS` in a fresh process (under `backend` if given); its stdout, or `ExportError` with its stderr."""
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
    run_module(["keras_pretrain.export.saved_model", "write", keras_file, saved_model], backend="tensorflow")


def verify_in_fresh_process(saved_model, inputs, expected, atol=1e-5):
    """Reload `saved_model` with TensorFlow alone in a new process; feed it `inputs` (.npy), compare with `expected` (.npz).

    Returns the report: signatures with their inputs and outputs, and the
    largest absolute difference per output. Raises `ExportError` if any output
    differs by more than `atol`, a predicted class differs, or a signature is missing.
    """
    report = json.loads(run_module(["keras_pretrain.export.verify", saved_model, inputs, expected]).splitlines()[-1])
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
