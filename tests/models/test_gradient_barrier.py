import re

import keras
import numpy as np
import pytest

from keras_pretrain.models.gradient_barrier import gradient_barrier
from keras_pretrain.models.vit import run_blocks, transformer_blocks

jax_only = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the barrier acts on XLA:CPU's fusion; TensorFlow and torch train these models without XLA, and there it "
    "returns its input unchanged",
)


class BlockStack(keras.Model):
    """Pre-norm blocks and a final norm, run through `run_blocks` or, with `barrier=False`, one after the other."""

    def __init__(self, depth, width=32, barrier=True):
        super().__init__()
        self.blocks = transformer_blocks(depth, width, num_heads=2, mlp_ratio=2, name="block")
        self.norm = keras.layers.LayerNormalization()
        self.barrier = barrier

    def call(self, tokens):
        if self.barrier:
            return self.norm(run_blocks(self.blocks, tokens))
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def test_training_through_the_barrier_gives_the_weights_of_plain_blocks():
    tokens = np.random.default_rng(0).normal(size=(8, 16, 32)).astype("float32")
    target = np.random.default_rng(1).normal(size=(8, 16, 32)).astype("float32")
    weights = []
    for barrier in (False, True):
        keras.utils.set_random_seed(0)
        model = BlockStack(depth=3, barrier=barrier)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(tokens, target)
        weights.append(model.get_weights())
    assert len(weights[0]) == len(weights[1])
    for plain, barrier in zip(*weights):
        np.testing.assert_allclose(barrier, plain, atol=1e-6)


def largest_fusion_of_the_gradient(depth, barrier=True):
    """The most operands any fusion of XLA's compiled gradient of a `depth`-block stack takes."""
    import jax
    import jax.numpy as jnp

    keras.utils.set_random_seed(0)
    model = BlockStack(depth, barrier=barrier)
    tokens = jnp.ones((8, 16, 32))
    model(tokens)  # builds the blocks

    def loss(trainable):
        outputs, _ = model.stateless_call(trainable, [v.value for v in model.non_trainable_variables], tokens)
        return jnp.sum(outputs**2)

    compiled = jax.jit(jax.grad(loss)).lower([v.value for v in model.trainable_variables]).compile().as_text()
    operand_lists = re.findall(r" fusion\((.*?)\), kind=", compiled)
    return max(len(re.findall(r"%[\w.\-]+", operands)) for operands in operand_lists)


def skip_unless_jax_on_cpu():
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("the barrier is a plain identity when compiled for accelerators")


@jax_only
def test_xla_cpu_fuses_no_more_of_the_gradient_into_one_place_as_the_stack_deepens():
    skip_unless_jax_on_cpu()
    # Without the barrier every fusion reading the residual stream's gradient recomputes the terms of all
    # blocks above it: the largest fusion takes 29 operands at depth 2, 58 at 4, 116 at 8; with it 21 at each.
    deep = largest_fusion_of_the_gradient(8)
    assert deep <= largest_fusion_of_the_gradient(2)
    assert deep < largest_fusion_of_the_gradient(8, barrier=False)


@jax_only
@pytest.mark.parametrize("first", [1.5, np.nan])  # the two branches of the barrier's conditional on CPU
def test_the_gradient_passes_the_barrier_unchanged(first):
    import jax
    import jax.numpy as jnp

    skip_unless_jax_on_cpu()
    upstream = jnp.asarray([[first, -0.0, 2.0], [np.inf, 1.0, -3.0]])
    gradient = jax.grad(lambda x: jnp.sum(gradient_barrier(x) * upstream))(jnp.ones((2, 3)))
    np.testing.assert_array_equal(gradient, upstream)
    if not np.isnan(first):  # the NaN branch adds 0.0, which turns -0.0 into 0.0
        np.testing.assert_array_equal(np.signbit(gradient), np.signbit(upstream))


@jax_only
def test_an_empty_gradient_passes_the_barrier():
    import jax
    import jax.numpy as jnp

    assert jax.grad(lambda x: jnp.sum(gradient_barrier(x)))(jnp.zeros((0, 4))).shape == (0, 4)
