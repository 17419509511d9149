"""`gradient_barrier`: an identity at which XLA:CPU computes the incoming gradient once."""

import functools

import keras


def gradient_barrier(x):
    """Identity, forward and backward; on JAX's CPU backend the gradient arriving here is materialized.

    In a pre-norm transformer the gradient of the residual stream is a sum
    built up block by block, mostly of elementwise terms (the layer norms'
    backward passes). XLA:CPU fuses such a sum into every fusion that reads it
    (each weight gradient's transposed copy, each bias gradient, each layer
    norm's backward pass), so the fusions of block `i` recompute the terms of
    every block above it: work that grows with the square of the depth (a third
    of the step of a 6-block MAE encoder). Passing the block inputs through
    this barrier makes each block's incoming gradient one buffer. XLA:CPU
    drops `optimization_barrier` before fusing, so the barrier is a
    conditional, a boundary its fusion does not cross; compiled for other
    platforms it is a plain identity. On TensorFlow and torch it returns `x`.

    On JAX it is a `jax.custom_vjp`: reverse-mode differentiation (what
    training uses) works, forward mode (`jax.jvp`, `jax.hessian`) does not,
    and the result carries no Keras mask. Call it on tensors inside a layer's
    `call`, not on symbolic `keras.Input`s.

    `keras_pretrain.models.vit.run_blocks` runs a stack of blocks this way.

    Example:
    >>> def call(self, tokens, training=False):
    ...     for block in self.blocks:
    ...         tokens = block(gradient_barrier(tokens), training=training)
    ...     return tokens
    """
    if keras.backend.backend() != "jax":
        return x
    return _jax_gradient_barrier()(x)


@functools.cache
def _jax_gradient_barrier():
    import jax
    import jax.numpy as jnp

    def materialize(gradient):
        if gradient.size == 0:
            return gradient
        # The predicate must be a run-time value (a constant one is folded away) and the branches must
        # differ (identical ones are merged); both give the gradient, `+ 0.0` only turning -0.0 into 0.0.
        first_is_nan = jnp.isnan(gradient.reshape(-1)[0])
        return jax.lax.cond(first_is_nan, lambda g: g + 0.0, lambda g: g, gradient)

    @jax.custom_vjp
    def barrier(x):
        return x

    def backward(_, gradient):
        return (jax.lax.platform_dependent(gradient, cpu=materialize, default=lambda g: g),)

    barrier.defvjp(lambda x: (x, None), backward)
    return barrier
