import keras

from tests.conftest import run_python


def test_quiet_needs_no_tensorflow_on_the_other_backends():
    # GPU images often hold JAX and PyTorch only; `keras-pretrain bench` runs there without TensorFlow.
    backend = "jax" if keras.backend.backend() == "tensorflow" else keras.backend.backend()
    code = ("import sys; sys.modules['tensorflow'] = None  # import tensorflow raises ImportError\n"
            "from keras_pretrain.logs import quiet; quiet(); print('quiet on', __import__('keras').backend.backend())")
    result = run_python(code, backend=backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"quiet on {backend}"
