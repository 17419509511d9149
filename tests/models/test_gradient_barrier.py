import re

import keras
import numpy as np
import pytest
from keras_hub.layers import TransformerEncoder

from keras_pretrain.models.vit import PreNormBlock


def block_stack(block_class, depth, width=32):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, width))
    tokens = inputs
    for _ in range(depth):
        tokens = block_class(intermediate_dim=2 * width, num_heads=2, normalize_first=True)(tokens)
    return keras.Model(inputs, keras.layers.LayerNormalization()(tokens))


def test_training_through_the_barrier_gives_the_weights_of_keras_hub_blocks():
    tokens = np.random.default_rng(0).normal(size=(8, 16, 32)).astype("float32")
    target = np.random.default_rng(1).normal(size=(8, 16, 32)).astype("float32")
    weights = []
    for block_class in (TransformerEncoder, PreNormBlock):
        model = block_stack(block_class, depth=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(tokens, target)
        weights.append(model.get_weights())
    assert len(weights[0]) == len(weights[1])
    for plain, barrier in zip(*weights):
        np.testing.assert_allclose(barrier, plain, atol=1e-6)


def largest_fusion_of_the_gradient(depth):
    """The most operands any fusion of XLA's compiled gradient of a `depth`-block stack takes."""
    import jax
    import jax.numpy as jnp

    model = block_stack(PreNormBlock, depth)
    tokens = jnp.ones((8, 16, 32))

    def loss(trainable):
        outputs, _ = model.stateless_call(trainable, [v.value for v in model.non_trainable_variables], tokens)
        return jnp.sum(outputs**2)

    compiled = jax.jit(jax.grad(loss)).lower([v.value for v in model.trainable_variables]).compile().as_text()
    operand_lists = re.findall(r"= \S+ fusion\((.*?)\), kind=", compiled)
    return max(len(operands.split(",")) for operands in operand_lists)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the barrier acts on XLA:CPU's fusion; TensorFlow and "
                    "torch train these models without XLA, and there it returns its input unchanged")
def test_xla_cpu_fuses_no_more_of_the_gradient_into_one_place_as_the_stack_deepens():
    # Without the barrier every fusion reading the residual stream's gradient recomputes the terms of all
    # blocks above it: the largest fusion takes 29 operands at depth 2, 58 at 4, 116 at 8; with it 21 at each.
    assert largest_fusion_of_the_gradient(8) <= largest_fusion_of_the_gradient(2)
