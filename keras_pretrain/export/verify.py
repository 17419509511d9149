"""Reload a SavedModel with TensorFlow alone and compare it with expected outputs.

Run as `python -m keras_pretrain.export.verify SAVED_MODEL INPUTS.npy EXPECTED.npz`;
it feeds the raw inputs (images or UTF-8 strings) to every signature that
takes one input and prints one JSON line: the signatures (inputs and outputs
with dtypes and shapes, as `saved_model_cli show` reports them) and the
largest absolute difference per output. It imports nothing of Keras on
purpose: it sees what a TF Serving process would see. Signatures on token
ids (text models) are checked through the string signatures that call them.
"""

import json
import sys

import numpy as np
import tensorflow as tf

try:  # registers the tokenizer ops a string-in SavedModel uses, as TF Serving builds with them
    import tensorflow_text  # noqa: F401
except ImportError:
    pass


def describe_signatures(loaded):
    """`{signature: {"inputs": {...}, "outputs": {...}}}` with dtype and shape of each tensor."""
    describe = lambda spec: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
    return {
        name: {
            "inputs": {k: describe(v) for k, v in fn.structured_input_signature[1].items()},
            "outputs": {k: describe(v) for k, v in fn.structured_outputs.items()},
        }
        for name, fn in loaded.signatures.items()
    }


def compare(saved_model, inputs, expected):
    loaded = tf.saved_model.load(str(saved_model))
    inputs = tf.constant(np.load(inputs))
    expected = dict(np.load(expected))
    diffs, same_class_index = {}, True
    for name, fn in loaded.signatures.items():
        specs = fn.structured_input_signature[1]
        if len(specs) != 1:
            continue
        outputs = fn(**{next(iter(specs)): inputs})
        for key, value in outputs.items():
            if key in expected:
                diff = float(np.max(np.abs(value.numpy().astype("float64") - expected[key])))
                diffs[f"{name}/{key}"] = diff
                if key == "class_index":
                    same_class_index &= diff == 0.0
    return {"signatures": describe_signatures(loaded), "max_abs_diff": diffs, "same_class_index": same_class_index}


if __name__ == "__main__":
    print(json.dumps(compare(*sys.argv[1:4])))
