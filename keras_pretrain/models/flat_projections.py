"""`flat_projections`: trace the projections of `(batch, length, ...)` tokens as one 2-D matrix product."""

import contextlib
import contextvars
import functools
import importlib
import math

import keras
from keras import ops

_active = contextvars.ContextVar("keras_pretrain_flat_projections", default=False)

# The Keras backend functions each backend's rewrite wraps.
_REWRITTEN = {"tensorflow": ("einsum",), "jax": ("einsum", "matmul")}


@contextlib.contextmanager
def flat_projections():
    """Within this context, a projection of `(batch, length, ...)` tokens is traced as one 2-D matrix product.

    A projection is a product of tokens with a kernel over the tokens' last
    axes: `Dense` (`x @ kernel`) and `EinsumDense`, as in the query, key, value
    and output projections of `MultiHeadAttention` (`abc,cde->abde`). Here the
    leading axes are folded into rows first: the same values up to float
    rounding, and the kernel gradient becomes one product over every token of
    the batch.

    - TensorFlow: Keras 3 lowers `EinsumDense`'s equations to a broadcasting
      `BatchMatMulV2`, whose kernel gradient is one small product per
      sequence, summed afterwards; folded, 1.45x faster on the MAE step of
      `keras-pretrain bench`.
    - JAX: the kernel gradient of a 3-D `dot_general` reads the output's
      gradient transposed, which XLA:CPU copies first (one more pass over
      every projection's gradient); from 2-D operands it contracts the rows
      directly. Folding `Dense` and `EinsumDense` makes the MAE step of
      `keras-pretrain bench` 1.11-1.14x and the MLM step 1.06-1.07x faster
      (a 2-core Zen 5 CPU).
    - torch: the context does nothing.

    The objectives trace their forward pass in this context (stems and heads
    too), the classifiers their transformer blocks
    (`keras_pretrain.models.vit.run_blocks`,
    `keras_pretrain.models.text_backbone.sequence_output`); every other product,
    and every product outside it, goes through Keras unchanged. It also
    decorates: `@flat_projections()` on a `call`.

    Example:
    >>> with flat_projections():
    ...     tokens = block(tokens, training=training)
    >>> @flat_projections()
    ... def call(self, images, training=False): ...
    """
    backend = keras.backend.backend()
    if backend not in _REWRITTEN:
        yield
        return
    _install(backend)
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


@functools.cache
def _install(backend):
    # Keras's backend functions are looked up on their module at each call; the wrappers defer to them
    # outside the context, so code that never enters it sees Keras unchanged.
    module = importlib.import_module(f"keras.src.backend.{backend}.numpy")
    rewrites = {"einsum": einsum_as_matrix_product, "matmul": matmul_as_matrix_product}
    for name in _REWRITTEN[backend]:
        setattr(module, name, _folding(getattr(module, name), rewrites[name]))


def _folding(keras_function, rewrite):
    @functools.wraps(keras_function)
    def function(*args, **kwargs):
        product = rewrite(*args) if _active.get() and not kwargs else None
        return keras_function(*args, **kwargs) if product is None else product

    return function


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


def einsum_as_matrix_product(subscripts, *operands):
    """The einsum of two operands as one 2-D product, or None when `subscripts` is not a projection
    (`projection_axes`)."""
    axes = projection_axes(subscripts) if len(operands) == 2 else None
    return None if axes is None else as_matrix_product(*operands, *axes)


def matmul_as_matrix_product(x, y):
    """`x @ y` as one 2-D product when `x` has more than 2 axes and `y` is a 2-D kernel; else None."""
    rank = len(ops.shape(x))
    return as_matrix_product(x, y, rank - 1, 1) if rank > 2 and len(ops.shape(y)) == 2 else None


def as_matrix_product(x, y, leading, contracted):
    """`x` (`leading` axes, then `contracted` ones) times `y` (the contracted axes, then output ones), its leading
    axes folded into rows; None unless `x` and `y` are floats of one dtype and the kernel's shape is known."""
    x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
    kernel_shape = tuple(y.shape)
    # Integer (quantized) products need Keras's int32 accumulation.
    if (x.dtype != y.dtype or not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype))
            or not all(isinstance(size, int) for size in kernel_shape)):
        return None
    rows = math.prod(kernel_shape[:contracted])
    # On JAX this `ops.matmul` passes through the wrapper too, which leaves 2-D products to Keras.
    product = ops.matmul(ops.reshape(x, (-1, rows)), ops.reshape(y, (rows, -1)))
    return ops.reshape(product, (*ops.shape(x)[:leading], *kernel_shape[contracted:]))
