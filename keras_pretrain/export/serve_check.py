"""Answer a TF Serving REST predict request from an exported SavedModel, locally.

`keras-pretrain serve-check saved_models/NAME` loads the newest version (or
`--version V`) with TensorFlow alone, prints its signatures, runs the request
body TF Serving's `:predict` endpoint accepts (`{"instances": [...]}`, row
format) and prints the JSON response TF Serving would give.
"""

import json
from pathlib import Path

import numpy as np


def resolve_version(model_dir, version=None):
    """`model_dir/version`, or the newest numbered version under `model_dir`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} does not exist; pass saved_models/NAME as written by an export.")
    if (model_dir / "saved_model.pb").is_file():
        return model_dir
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()))
    if version is None:
        if not versions:
            raise FileNotFoundError(f"{model_dir} holds no numbered version directory with a saved_model.pb.")
        version = versions[-1]
    path = model_dir / str(version)
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path} holds no saved_model.pb; versions present: {versions or 'none'}.")
    return path


def predict(loaded, request, signature_name="serving_default"):
    """The TF Serving REST response to `request` (`{"instances": [...]}`) as a dict."""
    import tensorflow as tf

    function = signature(loaded, signature_name)
    specs = function.structured_input_signature[1]
    if not isinstance(request, dict) or "instances" not in request or not isinstance(request["instances"], list):
        raise ValueError('The request must be a JSON object {"instances": [...]}, one entry per example.')
    instances = request["instances"]
    if not instances:
        raise ValueError("The request has no instances.")
    # Row format: each instance is the input itself or, with named inputs, {"name": value}.
    columns = {name: [] for name in specs}
    for instance in instances:
        values = instance if isinstance(instance, dict) else {next(iter(specs)): instance}
        if set(values) != set(specs):
            raise ValueError(f"Each instance must give the inputs {sorted(specs)}; got {sorted(values)}.")
        for name, value in values.items():
            columns[name].append(value)
    inputs = {}
    for name, spec in specs.items():
        value = np.asarray(columns[name])
        expected = spec.shape.as_list()
        shape_ok = value.ndim == len(expected) and all(e is None or e == v for e, v in zip(expected, value.shape))
        if not shape_ok:
            raise ValueError(f"Input {name!r} must have shape {expected} (None: any); the request gives {list(value.shape)}.")
        if spec.dtype.is_integer and not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"Input {name!r} must hold integers ({spec.dtype.name}); the request gives {value.dtype}.")
        if spec.dtype == tf.uint8 and (value.min() < 0 or value.max() > 255):
            raise ValueError(f"Input {name!r} is uint8: values must lie in [0, 255].")
        inputs[name] = tf.constant(value, dtype=spec.dtype)
    outputs = {k: v.numpy() for k, v in function(**inputs).items()}
    to_json = lambda v: v.decode() if isinstance(v, bytes) else v.tolist() if hasattr(v, "tolist") else v
    rows = [{k: to_json(v[i]) for k, v in outputs.items()} for i in range(len(instances))]
    return {"predictions": rows}


def signature(loaded, name):
    """The loaded SavedModel's signature `name`, or a clear error listing those it has."""
    if name not in loaded.signatures:
        raise ValueError(f"No signature {name!r}; the model has {', '.join(sorted(loaded.signatures))} (--signature).")
    return loaded.signatures[name]


def sample_request(loaded, signature_name="serving_default", count=2):
    """A request of `count` all-zero (or empty-string) instances shaped like the signature's input."""
    specs = signature(loaded, signature_name).structured_input_signature[1]
    zeros = lambda spec: np.zeros([d or 1 for d in spec.shape.as_list()[1:]], dtype=spec.dtype.as_numpy_dtype)
    instance = {name: "" if spec.dtype.name == "string" else zeros(spec).tolist() for name, spec in specs.items()}
    return {"instances": [instance] * count}


def serve_check(model_dir, request=None, version=None, signature_name="serving_default"):
    """Load the export, return `(signatures, request, response)` as TF Serving would see them."""
    import tensorflow as tf

    from keras_pretrain.export.verify import describe_signatures

    loaded = tf.saved_model.load(str(resolve_version(model_dir, version)))
    request = sample_request(loaded, signature_name) if request is None else request
    return describe_signatures(loaded), request, predict(loaded, request, signature_name)


def load_request(path):
    """Read a JSON request body from a file, with a clear error if it is missing or not JSON."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"The request file {path} does not exist: pass a JSON file {{\"instances\": [...]}}.")
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
