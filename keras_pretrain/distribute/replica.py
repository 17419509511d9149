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
    the same global batch. Objectives use it wherever they draw masks.

    Example:
    >>> noise = replica_uniform((batch_size, num_patches), seed=self.seed_generator)
    """
    replica, num_replicas = replica_position()
    if num_replicas == 1:
        return keras.random.uniform(shape, seed=seed)
    batch_size = shape[0]
    noise = keras.random.uniform((batch_size * num_replicas, *shape[1:]), seed=seed)
    return noise[replica * batch_size : (replica + 1) * batch_size]
