import json

import numpy as np
import pytest
from keras import ops

from keras_pretrain.export import export_saved_model
from tests.conftest import run_python
from tests.models.test_text_classifier import NAMES, tiny_classifier

TEXTS = ["a cat runs", "A GREEN TREE", "", "dogs and unknown wörds", "leaf " * 40]


@pytest.mark.slow
def test_string_in_saved_model_serves_what_keras_computes_in_a_fresh_process(tmp_path):
    classifier = tiny_classifier()
    path = export_saved_model(classifier, "text", root=tmp_path, samples=TEXTS[:3])
    report = classifier.export_report
    assert report["signatures"]["serving_default"]["inputs"] == {"texts": {"dtype": "string", "shape": [None]}}
    assert {"serving_default", "classify", "embed", "classify_token_ids", "embed_token_ids"} <= set(report["signatures"])
    assert max(report["max_abs_diff"].values()) <= 1e-5

    # An independent reload with TensorFlow alone, on other strings (empty, accented, longer than the sequence).
    code = f"""
import json, tensorflow as tf, tensorflow_text
m = tf.saved_model.load({str(path)!r})
out = m.signatures["serving_default"](texts=tf.constant({TEXTS!r}))
emb = m.signatures["embed"](texts=tf.constant({TEXTS!r}))["embeddings"]
print(json.dumps({{"p": out["probabilities"].numpy().tolist(), "i": out["class_index"].numpy().tolist(),
  "n": [s.decode() for s in out["class_name"].numpy()], "e": emb.numpy().tolist()}}))
"""
    result = run_python(code, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.splitlines()[-1])
    expected = classifier.classify_texts(TEXTS)
    assert np.max(np.abs(np.array(served["p"]) - expected)) <= 1e-5
    assert served["i"] == expected.argmax(-1).tolist()
    assert served["n"] == [NAMES[i] for i in served["i"]]
    np.testing.assert_allclose(served["e"], ops.convert_to_numpy(classifier.embed(classifier.preprocess(TEXTS))), atol=1e-5)
