"""The one thing an objective must do differently on each replica: draw its own share of the mask noise.

Losses need nothing: a `keras.losses.Loss` scales itself for `tf.distribute`.
"""

import keras


def replica_position():
    """`(replica_index, num_replicas)` of the code running now, for per-replica work.

    TensorFlow: the replica of the `tf.distribute` strategy in whose step this
    runs. PyTorch: the rank in the initialized process group. JAX (and no
    distribution): `(0, 1)`, because JAX steps see the global batch.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return 0, 1
        return context.replica_id_in_sync_group, context.num_replicas_in_sync
    if backend == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1


def replica_uniform(shape, seed):
    """Uniform noise in `[0, 1)` for this replica's share of the global batch.

    Every replica draws the noise of the whole global batch, `shape[0] *
    num_replicas` rows, from the same seed stream and keeps its own slice, so
    replicas mask differently while their seed generators stay in step, and a
    data-parallel step draws the very masks that one device would draw for
    the same global batch. Objectives use it wherever they draw masks. On
    TensorFlow the numbers are `keras.random.uniform`'s (float32) and stay the same
    under XLA (`jit_compile=True`), so compiling a step does not change its masks.

    Example:
    >>> noise = replica_uniform((batch_size, num_patches), seed=self.seed_generator)
    """
    replica, num_replicas = replica_position()
    if num_replicas == 1:
        return _uniform(shape, seed)
    batch_size = shape[0]
    noise = _uniform((batch_size * num_replicas, *shape[1:]), seed)
    return noise[replica * batch_size : (replica + 1) * batch_size]


def _uniform(shape, seed):
    if keras.backend.backend() != "tensorflow" or not isinstance(seed, keras.random.SeedGenerator):
        return keras.random.uniform(shape, seed=seed)
    import tensorflow as tf
    from tensorflow.python.ops import gen_stateless_random_ops_v2 as stateless

    # TensorFlow's Philox bits are the same in and out of XLA, but XLA turns them into
    # floats another way. TensorFlow's own kernel takes the low 23 bits as the mantissa:
    # doing that here gives `keras.random.uniform`'s float32 numbers bit for bit, either way.
    # The seed is Keras's: its int64 state folded into int32 as Keras folds it.
    seed = tf.cast(tf.math.floormod(seed.next(), tf.int32.max - 1), tf.int32)
    key, counter, _ = stateless.stateless_random_get_key_counter_alg(seed)
    philox = 1
    bits = stateless.stateless_random_uniform_full_int_v2(shape, key, counter, philox, dtype=tf.uint32)
    return tf.cast(tf.bitwise.bitwise_and(bits, 0x7FFFFF), tf.float32) * 2.0**-23
