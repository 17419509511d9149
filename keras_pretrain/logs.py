"""Quiet output by default: the libraries' start-up chatter and warnings hidden, ours shown on one line.

TensorFlow and XLA write C++ log lines to the process's standard error before
any log level applies, absl and TFDS log warnings a user cannot act on, and
scikit-learn and Keras raise Future- and DeprecationWarnings. The CLI calls
`quiet()` before anything imports them; `--verbose` skips it.

Example:
>>> quiet()               # then import keras, run a pipeline: only our own lines are printed
"""

import contextlib
import os
import sys
import warnings


def quiet():
    """Import the backend with its start-up logs silenced, and keep library warnings out of the output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # keras-hub's BertBackbone has a pooler that masked language modeling does not train.
    warnings.filterwarnings("ignore", message=r"Gradients do not exist for variables \['pooled_dense")
    warnings.showwarning = one_line_warning
    with silenced_stderr():
        import absl.logging
        import keras

        if keras.backend.backend() == "jax":
            import jax

            jax.devices()  # XLA reports the missing CUDA driver when it first looks for devices
        try:
            import tensorflow as tf
        except ImportError:
            tf = None  # a GPU image with jax and torch only: `keras-pretrain bench` needs no TensorFlow there
    if tf is not None:
        tf.get_logger().setLevel("ERROR")
    absl.logging.set_verbosity(absl.logging.ERROR)


def one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Show a warning as `warning: message`, without the source line it came from."""
    print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 at /dev/null for a while: C++ libraries write there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
