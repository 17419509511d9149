"""`flat_projections`: on TensorFlow, trace `EinsumDense` projections as one 2-D matrix product."""

import contextlib
import contextvars
import functools
import math

import keras

_active = contextvars.ContextVar("keras_pretrain_flat_projections", default=False)


@contextlib.contextmanager
def flat_projections():
    """Within this context, TensorFlow contracts a projection of `(batch, length, ...)` tokens as a 2-D `MatMul`.

    Keras 3 lowers `EinsumDense`'s equations (the query, key, value and output
    projections of `MultiHeadAttention`, such as `abc,cde->abde`) on
    TensorFlow to a `tf.matmul` of the 3-D tokens with the 2-D kernel: a
    broadcasting `BatchMatMulV2`, whose kernel gradient is one small product per
    sequence, each contracting only the sequence's length, summed afterwards.
    With MAE's 16 visible patches that is most of TensorFlow's step. Here the
    leading axes are folded into rows first, so the kernel gradient is one
    product over every token of the batch: the same values up to float rounding,
    1.45x faster on the MAE step of `keras-pretrain bench`. The objectives and
    classifiers trace their transformer blocks in this context
    (`keras_pretrain.models.vit.run_blocks`,
    `keras_pretrain.models.text_backbone.sequence_output`); other einsums, and
    every einsum outside it, go through Keras unchanged. JAX and torch contract
    such equations in one product already: there it does nothing.

    Example:
    >>> with flat_projections():
    ...     tokens = block(tokens, training=training)
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    _install()
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


@functools.cache
def _install():
    # Keras's TensorFlow einsum is looked up on its module at each call; the wrapper defers to it
    # outside the context, so code that never enters it sees Keras unchanged.
    from keras.src.backend.tensorflow import numpy as tensorflow_numpy

    keras_einsum = tensorflow_numpy.einsum

    @functools.wraps(keras_einsum)
    def einsum(subscripts, *operands, **kwargs):
        if _active.get() and len(operands) == 2 and not kwargs:
            product = _as_matrix_product(subscripts, *operands)
            if product is not None:
                return product
        return keras_einsum(subscripts, *operands, **kwargs)

    tensorflow_numpy.einsum = einsum


@functools.cache
def projection_axes(subscripts):
    """`(leading, contracted)` axis counts when `subscripts` reads `x` (leading axes, then contracted ones) times
    a kernel (the contracted axes, then its output ones), each letter once; None for any other equation.

    >>> projection_axes("abc,cde->abde")
    (2, 1)
    """
    subscripts = subscripts.replace(" ", "")
    if "->" not in subscripts or "." in subscripts or subscripts.count(",") != 1:
        return None
    inputs, output = subscripts.split("->")
    x_axes, y_axes = inputs.split(",")
    contracted = "".join(axis for axis in y_axes if axis in x_axes and axis not in output)
    leading, kernel_out = x_axes[: len(x_axes) - len(contracted)], y_axes[len(contracted):]
    if (not (contracted and leading and kernel_out) or x_axes != leading + contracted
            or y_axes != contracted + kernel_out or output != leading + kernel_out
            or len(set(x_axes + y_axes)) != len(leading + y_axes)):
        return None
    return len(leading), len(contracted)


def _as_matrix_product(subscripts, x, y):
    """The einsum as one 2-D `MatMul` (leading axes folded into rows), or None when `subscripts` is not a
    projection (`projection_axes`), the operands are not floats of one dtype, or a kernel size is unknown."""
    import tensorflow as tf

    axes = projection_axes(subscripts)
    if axes is None:
        return None
    leading, contracted = axes
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    # Integer (quantized) products need Keras's int32 accumulation.
    if x.dtype != y.dtype or not x.dtype.is_floating or not y.shape.is_fully_defined():
        return None
    kernel_shape = y.shape.as_list()
    rows = math.prod(kernel_shape[:contracted])
    product = tf.matmul(tf.reshape(x, [-1, rows]), tf.reshape(y, [rows, -1]))
    return tf.reshape(product, tf.concat([tf.shape(x)[:leading], kernel_shape[contracted:]], axis=0))
