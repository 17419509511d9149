"""JAX: `keras.distribution` (DataParallel, ModelParallel, multi-process initialize)."""

import os

import keras
import numpy as np

from keras_pretrain.distribute.layout import transformer_layout_map
from keras_pretrain.distribute.plan import DistributionPlan, env_int


class JaxPlan(DistributionPlan):
    """Data or model parallelism with `keras.distribution` on JAX.

    With `model_parallel == 1`, a `DataParallel` over the devices; otherwise
    a `ModelParallel` on a `(devices // model_parallel, model_parallel)` mesh
    named `("batch", "model")` whose layout map shards the transformer kernels
    (see `transformer_layout_map`). Several processes join through
    `keras.distribution.initialize` first; Keras then gives each process its
    share of every global batch.

    Example:
    >>> plan = JaxPlan(model_parallel=2, devices=8)
    >>> with plan.scope():
    ...     mae = MaskedAutoencoder(ViTEncoder(), seed=0)  # kernels created sharded
    """

    def __init__(self, model_parallel=1, devices=None, coordinator_address=None, num_processes=None, process_id=None):
        num_processes = env_int("KERAS_DISTRIBUTION_NUM_PROCESSES", num_processes) or 1
        if num_processes > 1:
            coordinator_address = coordinator_address or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
            process_id = env_int("KERAS_DISTRIBUTION_PROCESS_ID", process_id)
            if not coordinator_address:
                raise ValueError(
                    f"{num_processes} processes need a coordinator address: pass --coordinator-address "
                    "HOST:PORT (process 0's host) or set KERAS_DISTRIBUTION_JOB_ADDRESSES."
                )
            if process_id is None or not 0 <= process_id < num_processes:
                raise ValueError(
                    f"Each of the {num_processes} processes needs its id in [0, {num_processes}): pass "
                    f"--process-id or set KERAS_DISTRIBUTION_PROCESS_ID; got {process_id}."
                )
            keras.distribution.initialize(coordinator_address, num_processes, process_id)
        available = keras.distribution.list_devices()
        count = devices or len(available)
        if count > len(available):
            raise ValueError(
                f"{count} devices requested but JAX sees {len(available)} ({available[0].split(':')[0]}). "
                "On CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts."
            )
        if count % model_parallel:
            raise ValueError(
                f"model_parallel={model_parallel} does not divide the {count} devices: "
                "the mesh is (devices // model_parallel, model_parallel)."
            )
        if count % num_processes:
            raise ValueError(f"{count} devices do not split evenly over {num_processes} processes.")
        chosen = available[:count]
        if model_parallel == 1:
            self.distribution = keras.distribution.DataParallel(devices=chosen)
            self.engine = "keras.distribution.DataParallel"
        else:
            mesh = keras.distribution.DeviceMesh((count // model_parallel, model_parallel), ["batch", "model"], chosen)
            self.distribution = keras.distribution.ModelParallel(
                layout_map=transformer_layout_map(mesh), batch_dim_name="batch"
            )
            self.engine = "keras.distribution.ModelParallel"
        super().__init__(count // model_parallel, model_parallel, num_processes, process_id or 0)

    def check_batch_size(self, batch_size):
        super().check_batch_size(batch_size)
        if batch_size % self.num_processes:
            raise ValueError(f"The global batch size {batch_size} must split evenly over {self.num_processes} processes.")

    def scope(self):
        return self.distribution.scope()

    @property
    def input_shard(self):
        return self.process_id, self.num_processes

    def distribute(self, dataset):
        # Each host already reads its own share (input_shard); Keras must not shard it again.
        self.distribution.auto_shard_dataset = False
        return super().distribute(dataset)

    def agree_min(self, value):
        if self.num_processes == 1:
            return value
        from jax.experimental import multihost_utils

        return int(multihost_utils.process_allgather(np.int64(value)).min())
