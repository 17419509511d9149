"""TensorFlow: `tf.distribute.MirroredStrategy`, or `MultiWorkerMirroredStrategy` from `TF_CONFIG`."""

import json
import os

import tensorflow as tf

from keras_pretrain.distribute.plan import DistributionPlan


class TensorFlowPlan(DistributionPlan):
    """Synchronous data parallelism with `tf.distribute` on TensorFlow.

    One host: a `MirroredStrategy` over `devices` GPUs (all by default); on a
    machine without GPUs the CPU is split into `devices` logical devices, which
    is how the tests run it. Several hosts: when `TF_CONFIG` lists more than
    one worker, a `MultiWorkerMirroredStrategy` over all their GPUs. Models
    must be built and compiled in `scope()`; the objectives compute their loss
    with Keras losses, which divide by the replica count, so logs and gradients
    are the global batch's.

    Example:
    >>> plan = TensorFlowPlan(devices=2)
    >>> with plan.scope():
    ...     mae = MaskedAutoencoder(ViTEncoder(), seed=0)
    ...     mae.compile(optimizer="adamw")
    """

    def __init__(self, devices=None):
        workers = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {}).get("worker", [])
        if len(workers) > 1:
            task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
            if task.get("type") not in ("worker", "chief") or "index" not in task:
                raise ValueError(
                    f'TF_CONFIG must name this process\'s task, e.g. "task": {{"type": "worker", "index": 0}}; '
                    f"got {task}."
                )
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
            self.engine = "tf.distribute.MultiWorkerMirroredStrategy"
            resolver = self.strategy.cluster_resolver
            super().__init__(self.strategy.num_replicas_in_sync, 1, len(workers), resolver.task_id)
            return
        self.strategy = tf.distribute.MirroredStrategy(devices=self._device_names(devices))
        self.engine = "tf.distribute.MirroredStrategy"
        super().__init__(self.strategy.num_replicas_in_sync)

    @staticmethod
    def _device_names(count):
        # Physical devices only: listing logical ones starts the runtime, after which
        # the CPU can no longer be split.
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if count and count > len(gpus):
                raise ValueError(f"{count} devices requested but TensorFlow sees {len(gpus)} GPUs.")
            return [f"/gpu:{i}" for i in range(count or len(gpus))]
        count = count or 1
        if count > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
            except RuntimeError:
                configured = len(tf.config.list_logical_devices("CPU"))
                if configured < count:
                    raise ValueError(
                        f"TensorFlow already started with {configured} CPU device(s); {count} logical CPU "
                        "devices must be set up before TensorFlow runs anything (call setup() first)."
                    ) from None
        return [f"/cpu:{i}" for i in range(count)]

    def scope(self):
        return self.strategy.scope()
