import contextlib

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_pretrain.models import ViTEncoder
from keras_pretrain.models.flat_projections import (
    as_matrix_product,
    flat_projections,
    matmul_as_matrix_product,
    projection_axes,
)
from keras_pretrain.models.text_backbone import sequence_output
from keras_pretrain.models.vit import run_blocks, transformer_blocks
from keras_pretrain.objectives import LatentMaskedPrediction, MaskedAutoencoder, MaskedLanguageModel, SimMIM

rewriting_backends_only = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="torch multiplies tokens by a kernel in one product of every token already; there the context does "
    "nothing (its values are tested on every backend)",
)

# EinsumDense's equations in MultiHeadAttention (query/key/value, output) and a plain 3-D x 2-D projection,
# each as an einsum; None: `Dense`'s `x @ kernel`.
PROJECTIONS = [("abc,cde->abde", (4, 5, 6), (6, 2, 3)), ("abcd,cde->abe", (4, 5, 2, 3), (2, 3, 6)),
               ("abc,cd->abd", (4, 5, 6), (6, 7)), (None, (4, 5, 6), (6, 7)), (None, (2, 4, 5, 6), (6, 7))]


def product(equation, x, kernel):
    return ops.matmul(x, kernel) if equation is None else ops.einsum(equation, x, kernel)


def random_operands(x_shape, kernel_shape):
    rng = np.random.default_rng(0)
    return rng.normal(size=x_shape).astype("float32"), rng.normal(size=kernel_shape).astype("float32")


@pytest.mark.parametrize("equation, x_shape, kernel_shape", PROJECTIONS)
def test_projections_give_keras_values(equation, x_shape, kernel_shape):
    x, kernel = random_operands(x_shape, kernel_shape)
    expected = np.einsum(equation or "...c,cd->...d", x, kernel)
    with flat_projections():
        flat = ops.convert_to_numpy(product(equation, x, kernel))
    np.testing.assert_allclose(flat, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("equation", ["abcd,aecd->acbe", "acbe,aecd->abcd", "abc,c->ab", "...b,bc->...c",
                                      "abc,dce->abde", "ab,ab->a", "abc,cd->abdc"])
def test_other_equations_are_left_to_keras(equation):
    assert projection_axes(equation) is None


def test_projection_axes_count_leading_and_contracted_axes():
    assert [projection_axes(equation) for equation, _, _ in PROJECTIONS[:3]] == [(2, 1), (2, 2), (2, 1)]


def test_only_tokens_times_a_kernel_are_folded():
    assert matmul_as_matrix_product(np.ones((3, 4), "float32"), np.ones((4, 5), "float32")) is None
    assert matmul_as_matrix_product(np.ones((2, 3, 4), "float32"), np.ones((2, 4, 5), "float32")) is None
    assert tuple(matmul_as_matrix_product(np.ones((2, 3, 4), "float32"), np.ones((4, 5), "float32")).shape) == (2, 3, 5)


def test_integer_and_mixed_dtype_products_are_left_to_keras():
    x, kernel = ops.ones((2, 3, 4), "int8"), ops.ones((4, 5), "int8")
    assert as_matrix_product(x, kernel, 2, 1) is None
    assert as_matrix_product(ops.cast(x, "float32"), ops.cast(kernel, "float16"), 2, 1) is None
    with flat_projections():
        products = [ops.einsum("abc,cd->abd", x, kernel), ops.matmul(x, kernel)]
    for result in products:  # Keras's int32 accumulation
        assert keras.backend.standardize_dtype(result.dtype) == "int32" and int(result[0, 0, 0]) == 4


def unfolded_projections(function, *args):
    """Operand ranks of every product `function` traces that multiplies tokens of more than 2 axes by a kernel
    without folding them into rows: a broadcasting `BatchMatMul` on TensorFlow, a `dot_general` without batch
    axes on an operand of more than 2 axes on JAX."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        graph = tf.function(function).get_concrete_function(*args).graph
        return [ranks for op in graph.get_operations() if op.type.startswith("BatchMatMul")
                and len(ranks := {t.shape.rank for t in op.inputs}) > 1]
    import jax

    def products(jaxpr):
        for equation in jaxpr.eqns:
            if equation.primitive.name == "dot_general":
                yield equation.params["dimension_numbers"][1], [len(v.aval.shape) for v in equation.invars]
            for param in equation.params.values():
                for sub in param if isinstance(param, (tuple, list)) else [param]:
                    sub = getattr(sub, "jaxpr", sub)
                    if hasattr(sub, "eqns"):
                        yield from products(sub)

    jaxpr = jax.make_jaxpr(function)(*args).jaxpr
    return [ranks for (batch, _), ranks in products(jaxpr) if not batch and max(ranks) > 2]


def gradient_function(layer):
    """A function of the tokens giving the gradients of a loss through `layer` for the tokens and its trainable
    weights."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def gradients(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) ** 2)
            return tape.gradient(loss, [x, *layer.trainable_weights])

        return gradients
    import jax

    def loss(weights, x):
        outputs, _ = layer.stateless_call(weights, [v.value for v in layer.non_trainable_variables], x)
        return (outputs**2).sum()

    return lambda x: jax.grad(loss, argnums=(0, 1))([v.value for v in layer.trainable_variables], x)


class Blocks(keras.layers.Layer):
    """Transformer blocks, run plain (`block(x)` one after the other) or with `run_blocks`."""

    def __init__(self, flat):
        super().__init__()
        self.flat = flat
        self.blocks = transformer_blocks(2, 32, num_heads=2, mlp_ratio=2, name="block")

    def call(self, x):
        if self.flat:
            return run_blocks(self.blocks, x)
        for block in self.blocks:
            x = block(x)
        return x


@rewriting_backends_only
def test_blocks_train_their_projections_as_matrix_products():
    tokens = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(8, 16, 32)).astype("float32"))
    unfolded = {}
    for flat in (False, True):
        layer = Blocks(flat)
        layer(tokens)
        unfolded[flat] = unfolded_projections(gradient_function(layer), tokens)
    # Keras alone: TensorFlow broadcasts the four attention projections forward and in both gradients; JAX also
    # multiplies the 3-D tokens by the feed-forward kernels.
    assert len(unfolded[False]) >= 16, "Keras no longer traces these products unfolded: drop flat_projections"
    assert unfolded[True] == []


@rewriting_backends_only
@pytest.mark.parametrize("equation, x_shape, kernel_shape", PROJECTIONS)
def test_gradients_match_keras(equation, x_shape, kernel_shape):
    x, kernel = random_operands(x_shape, kernel_shape)
    upstream = np.random.default_rng(1).normal(size=np.einsum(equation or "...c,cd->...d", x, kernel).shape)
    upstream = ops.convert_to_tensor(upstream.astype("float32"))
    grads = []
    for context in (contextlib.nullcontext, flat_projections):
        def loss(x, kernel):
            with context():
                return ops.sum(product(equation, x, kernel) * upstream)

        if keras.backend.backend() == "jax":
            import jax

            grads.append(jax.grad(loss, argnums=(0, 1))(x, kernel))
        else:
            import tensorflow as tf

            x_tensor, kernel_tensor = tf.constant(x), tf.constant(kernel)
            with tf.GradientTape() as tape:
                tape.watch([x_tensor, kernel_tensor])
                value = loss(x_tensor, kernel_tensor)
            grads.append(tape.gradient(value, [x_tensor, kernel_tensor]))
    for keras_grad, flat_grad in zip(*grads):
        np.testing.assert_allclose(ops.convert_to_numpy(flat_grad), ops.convert_to_numpy(keras_grad),
                                   rtol=1e-5, atol=1e-5)


@rewriting_backends_only
def test_text_backbones_run_with_flat_projections():
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=8)
    token_ids = ops.ones((2, 8), "int32")
    assert unfolded_projections(lambda ids: sequence_output(backbone, ids, ops.ones_like(ids)), token_ids) == []


def vit():
    return ViTEncoder(patch_size=7, hidden_dim=16, depth=1, num_heads=2)


def bert():
    return keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=16)


OBJECTIVES = {
    "mae": lambda: MaskedAutoencoder(vit(), decoder_dim=16, decoder_depth=1, decoder_heads=2, seed=0),
    "simmim": lambda: SimMIM(vit(), seed=0),
    "latent": lambda: LatentMaskedPrediction(vit(), predictor_dim=16, target_layers=1, seed=0),
    "mlm": lambda: MaskedLanguageModel(bert(), special_token_ids=[0, 1, 2, 3], mask_token_id=4, seed=0),
}


@rewriting_backends_only
@pytest.mark.parametrize("name", ["mae", "simmim", "latent", "mlm"])
def test_objectives_trace_their_heads_and_stems_as_matrix_products(name):
    model = OBJECTIVES[name]()
    if name == "mlm":
        batch = {"token_ids": np.full((2, 16), 7, "int32"), "padding_mask": np.ones((2, 16), "int32")}
    else:
        batch = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype("uint8")
    model(batch)
    if keras.backend.backend() == "jax":
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def forward(batch):
            return model.stateless_call(trainable, non_trainable, batch, training=True)[0]
    else:
        def forward(batch):
            return model(batch, training=True)
    batch = keras.tree.map_structure(ops.convert_to_tensor, batch)
    assert unfolded_projections(forward, batch) == []
