import contextlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models.flat_projections import _as_matrix_product, flat_projections, projection_axes
from keras_pretrain.models.vit import run_blocks, transformer_blocks

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the rewrite acts on Keras's TensorFlow lowering of einsum; JAX and torch contract a projection in one "
    "product already, and there the context does nothing",
)

# EinsumDense's equations in MultiHeadAttention (query/key/value, output) and a plain 3-D x 2-D projection.
PROJECTIONS = [("abc,cde->abde", (4, 5, 6), (6, 2, 3)), ("abcd,cde->abe", (4, 5, 2, 3), (2, 3, 6)),
               ("abc,cd->abd", (4, 5, 6), (6, 7))]


@pytest.mark.parametrize("equation, x_shape, kernel_shape", PROJECTIONS)
def test_projections_give_keras_einsum_values(equation, x_shape, kernel_shape):
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=x_shape).astype("float32"), rng.normal(size=kernel_shape).astype("float32")
    expected = np.einsum(equation, x, kernel)
    with flat_projections():
        flat = ops.convert_to_numpy(ops.einsum(equation, x, kernel))
    np.testing.assert_allclose(flat, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("equation", ["abcd,aecd->acbe", "acbe,aecd->abcd", "abc,c->ab", "...b,bc->...c",
                                      "abc,dce->abde", "ab,ab->a", "abc,cd->abdc"])
def test_other_equations_are_left_to_keras(equation):
    assert projection_axes(equation) is None


def test_projection_axes_count_leading_and_contracted_axes():
    assert [projection_axes(equation) for equation, _, _ in PROJECTIONS] == [(2, 1), (2, 2), (2, 1)]


@tensorflow_only
def test_integer_and_mixed_dtype_products_are_left_to_keras():
    import tensorflow as tf

    x, kernel = tf.ones((2, 3, 4), "int8"), tf.ones((4, 5), "int8")
    assert _as_matrix_product("abc,cd->abd", x, kernel) is None
    assert _as_matrix_product("abc,cd->abd", tf.cast(x, "float32"), tf.cast(kernel, "float16")) is None
    with flat_projections():
        product = ops.einsum("abc,cd->abd", x, kernel)
    assert product.dtype == tf.int32 and int(product[0, 0, 0]) == 4


def traced_op_inputs(function, *args):
    """`(op type, input ranks)` of every op in the TensorFlow graph of `function` traced on `args`."""
    import tensorflow as tf

    graph = tf.function(function).get_concrete_function(*args).graph
    return [(op.type, [t.shape.rank for t in op.inputs]) for op in graph.get_operations()]


def broadcast_batch_matmuls(ops_and_ranks):
    return [ranks for kind, ranks in ops_and_ranks if kind.startswith("BatchMatMul") and len(set(ranks)) > 1]


@tensorflow_only
def test_tensorflow_trains_attention_projections_without_broadcast_batch_matmuls():
    import tensorflow as tf

    blocks = transformer_blocks(1, 32, num_heads=2, mlp_ratio=2, name="block")
    tokens = tf.constant(np.random.default_rng(0).normal(size=(8, 16, 32)).astype("float32"))
    blocks[0](tokens)

    def gradients(run):
        def function(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(run(x) ** 2)
            return tape.gradient(loss, blocks[0].trainable_weights)

        return function

    plain = traced_op_inputs(gradients(lambda x: blocks[0](x)), tokens)
    flat = traced_op_inputs(gradients(lambda x: run_blocks(blocks, x)), tokens)
    # Keras alone: each of the four projections broadcasts forward and in both gradients.
    assert len(broadcast_batch_matmuls(plain)) >= 8, "Keras no longer broadcasts these products: drop flat_projections"
    assert broadcast_batch_matmuls(flat) == []
    assert sum(kind == "MatMul" for kind, _ in flat) > sum(kind == "MatMul" for kind, _ in plain)


@tensorflow_only
@pytest.mark.parametrize("equation, x_shape, kernel_shape", PROJECTIONS)
def test_tensorflow_gradients_match_keras_einsum(equation, x_shape, kernel_shape):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=x_shape).astype("float32"))
    kernel = tf.Variable(rng.normal(size=kernel_shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=np.einsum(equation, x.numpy(), kernel.numpy()).shape).astype("float32"))
    grads = []
    for context in (contextlib.nullcontext, flat_projections):
        with tf.GradientTape() as tape:
            tape.watch(x)
            with context():
                out = ops.einsum(equation, x, kernel)
            loss = tf.reduce_sum(out * upstream)
        grads.append([g.numpy() for g in tape.gradient(loss, [x, kernel])])
    for keras_grad, flat_grad in zip(*grads):
        np.testing.assert_allclose(flat_grad, keras_grad, rtol=1e-5, atol=1e-5)


@tensorflow_only
def test_tensorflow_text_backbones_run_with_flat_projections():
    import keras_hub
    import tensorflow as tf

    from keras_pretrain.models.text_backbone import sequence_output

    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=8)
    token_ids = tf.ones((2, 8), "int32")
    ops_and_ranks = traced_op_inputs(lambda ids: sequence_output(backbone, ids, tf.ones_like(ids)), token_ids)
    assert broadcast_batch_matmuls(ops_and_ranks) == []
    assert any(kind == "MatMul" for kind, _ in ops_and_ranks)
