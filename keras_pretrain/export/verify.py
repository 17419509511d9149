"""Reload a SavedModel with TensorFlow alone and compare it with expected outputs.

Run as `python -m keras_pretrain.export.verify SAVED_MODEL SAMPLES.npz`; it
prints one JSON line: the signatures (inputs and outputs with dtypes and
shapes, as `saved_model_cli show` reports them) and the largest absolute
difference per output. It imports nothing of Keras on purpose: it sees what
a TF Serving process would see.
"""

import json
import sys

import numpy as np
import tensorflow as tf


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


def compare(saved_model, samples):
    loaded = tf.saved_model.load(str(saved_model))
    expected = dict(np.load(samples))
    images = tf.constant(expected.pop("images"))
    diffs, same_class_index = {}, True
    for name, fn in loaded.signatures.items():
        (input_name,) = fn.structured_input_signature[1]
        outputs = fn(**{input_name: images})
        for key, value in outputs.items():
            if key in expected:
                diff = float(np.max(np.abs(value.numpy().astype("float64") - expected[key])))
                diffs[f"{name}/{key}"] = diff
                if key == "class_index":
                    same_class_index &= diff == 0.0
    return {"signatures": describe_signatures(loaded), "max_abs_diff": diffs, "same_class_index": same_class_index}


if __name__ == "__main__":
    print(json.dumps(compare(sys.argv[1], sys.argv[2])))
