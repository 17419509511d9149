"""`setup()`: one entry point that picks the backend's engine and checks the configuration."""

import contextlib
import os

import keras


class DistributionPlan:
    """How training is spread over devices and processes; this base class is one device.

    A plan hands out what a training script needs and nothing else: a scope
    to build and compile models in, the arguments that feed `model.fit` (the
    global batch split per replica, the last partial batch dropped, each host
    or rank given its share), and whether this process is the chief that logs,
    checkpoints and exports. Get one from `setup()`.

    Args:
        num_replicas: data-parallel replicas over all processes.
        model_parallel: devices each replica's kernels are sharded over.
        num_processes: processes (hosts, or torch ranks) taking part.
        process_id: this process's index; process 0 is the chief.

    Example:
    >>> plan = setup()  # no flags: a single device, `fit` as usual
    >>> with plan.scope():
    ...     model = build_and_compile()
    >>> model.fit(**plan.fit_arguments(images, batch_size=256), epochs=2)
    """

    engine = "no distribution"

    def __init__(self, num_replicas=1, model_parallel=1, num_processes=1, process_id=0):
        self.num_replicas = num_replicas
        self.model_parallel = model_parallel
        self.num_processes = num_processes
        self.process_id = process_id

    @property
    def is_chief(self):
        """True in the one process that should log, checkpoint and export."""
        return self.process_id == 0

    @property
    def distributed(self):
        return self.num_replicas * self.model_parallel * self.num_processes > 1

    def scope(self):
        """The context to build, compile and `fit` models in."""
        return contextlib.nullcontext()

    def check_batch_size(self, batch_size):
        """Raise a clear error unless the global batch splits evenly over the replicas."""
        if batch_size < 1 or batch_size % self.num_replicas:
            raise ValueError(
                f"The global batch size {batch_size} must be a positive multiple of the "
                f"{self.num_replicas} data-parallel replicas ({self.describe()}); for example "
                f"{max(1, round(batch_size / self.num_replicas)) * self.num_replicas}."
            )

    def fit_arguments(self, x, batch_size, shuffle=True, seed=0):
        """Keyword arguments for `model.fit` that feed `x` in global batches of `batch_size`.

        One device: `x` and `batch_size` unchanged (the last batch may be
        partial). Distributed: a `tf.data.Dataset` (reshuffled every epoch with
        `seed` if `shuffle`, the same order in every process) in global batches with the
        remainder dropped so every step splits evenly, and sharded per host or
        rank as the backend needs; plus the plan's callbacks. `x` is an array
        or a dict of arrays with one row per example.
        """
        if not self.distributed:
            return {"x": x, "batch_size": batch_size, "shuffle": shuffle}
        self.check_batch_size(batch_size)
        num_examples = len(next(iter(x.values())) if isinstance(x, dict) else x)
        if num_examples < batch_size:
            raise ValueError(
                f"{num_examples} examples make no full global batch of {batch_size}: "
                "use a smaller batch or more data."
            )
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices(x)
        if shuffle:
            dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
        dataset = self.shard(dataset.batch(batch_size, drop_remainder=True))
        return {"x": dataset.prefetch(tf.data.AUTOTUNE), "callbacks": self.callbacks()}

    def shard(self, dataset):
        """This process's share of a dataset of global batches (all of it by default)."""
        return dataset

    @property
    def input_shard(self):
        """`(index, count)`: which share of the input files this process reads itself.

        `(0, 1)` (everything) on one process and with `tf.distribute`, whose
        strategies split the batches; JAX hosts and torch ranks each read their
        own share, so a corpus never has to pass through one machine.
        """
        return 0, 1

    def local_batch_size(self, batch_size):
        """The batch this process reads for a global batch of `batch_size`; a clear error if it does not split."""
        self.check_batch_size(batch_size)
        count = self.input_shard[1]
        if batch_size % count:
            raise ValueError(f"The global batch size {batch_size} must split evenly over {count} processes.")
        return batch_size // count

    def distribute(self, dataset):
        """Keyword arguments for `model.fit` on `dataset`, this process's batches (see `input_shard`).

        Example:
        >>> local = source.dataset(..., indices=indices[plan.input_shard[0]::plan.input_shard[1]])
        >>> model.fit(**plan.distribute(local.batch(plan.local_batch_size(256), drop_remainder=True)),
        ...           steps_per_epoch=plan.agree_min(steps), epochs=3)
        """
        return {"x": dataset, "callbacks": self.callbacks()} if self.distributed else {"x": dataset}

    def agree_min(self, value):
        """The smallest of `value` over the processes reading their own input shares (steps per epoch must agree)."""
        return value

    def callbacks(self):
        """Callbacks `fit` needs under this plan."""
        return []

    def describe(self):
        """A one-line summary, e.g. for logs."""
        if not self.distributed:
            return f"one device ({keras.backend.backend()})"
        text = f"{self.num_replicas} data-parallel replicas"
        if self.model_parallel > 1:
            text += f" x {self.model_parallel}-way model parallelism"
        if self.num_processes > 1:
            text += f" over {self.num_processes} processes"
        return f"{text} ({keras.backend.backend()}, {self.engine})"


def setup(
    data_parallel=False,
    model_parallel=1,
    devices=None,
    coordinator_address=None,
    num_processes=None,
    process_id=None,
):
    """The `DistributionPlan` for this backend and these options; fails before training on a bad configuration.

    Args:
        data_parallel: replicate the model on every device and split each batch.
        model_parallel: also shard attention and MLP kernels over groups of
            this many devices (JAX only); implies data parallelism across groups.
        devices: how many devices to use (default: all). On JAX CPU set
            `XLA_FLAGS=--xla_force_host_platform_device_count=N` first (the CLI
            does); TensorFlow on CPU splits the CPU into `devices` logical
            devices. PyTorch: one device per `torchrun` process, so it must
            equal `WORLD_SIZE` if given.
        coordinator_address: JAX multi-host: `host:port` of process 0 (else
            `KERAS_DISTRIBUTION_JOB_ADDRESSES`). TensorFlow reads `TF_CONFIG`;
            torch reads `MASTER_ADDR`/`MASTER_PORT` set by `torchrun`.
        num_processes: JAX multi-host process count (else
            `KERAS_DISTRIBUTION_NUM_PROCESSES`).
        process_id: JAX multi-host process index (else `KERAS_DISTRIBUTION_PROCESS_ID`).

    Example:
    >>> plan = setup(data_parallel=True, devices=8)
    >>> plan.describe()
    '8 data-parallel replicas (jax, keras.distribution.DataParallel)'
    """
    if model_parallel is None or model_parallel < 1:
        raise ValueError(f"model_parallel must be at least 1; got {model_parallel}.")
    if devices is not None and devices < 1:
        raise ValueError(f"devices must be at least 1; got {devices}.")
    if not data_parallel and model_parallel == 1:
        if devices not in (None, 1) or coordinator_address or num_processes not in (None, 1):
            raise ValueError(
                "devices, coordinator address and process count only apply to distributed "
                "training: add data_parallel=True (--data-parallel) or model_parallel (--model-parallel N)."
            )
        return DistributionPlan()
    backend = keras.backend.backend()
    if backend == "jax":
        from keras_pretrain.distribute.jax_plan import JaxPlan

        return JaxPlan(model_parallel, devices, coordinator_address, num_processes, process_id)
    if model_parallel > 1:
        raise ValueError(
            f"Model parallelism (model_parallel={model_parallel}) needs the JAX backend: Keras's "
            f"layout-based sharding exists only there. On {backend}, use data parallelism."
        )
    if coordinator_address or num_processes or process_id is not None:
        launcher = "TF_CONFIG" if backend == "tensorflow" else "torchrun (MASTER_ADDR, WORLD_SIZE, RANK)"
        raise ValueError(
            f"Coordinator address, process count and id are JAX options; on {backend} "
            f"several hosts are described by {launcher}."
        )
    if backend == "tensorflow":
        from keras_pretrain.distribute.tensorflow_plan import TensorFlowPlan

        return TensorFlowPlan(devices)
    from keras_pretrain.distribute.torch_plan import TorchPlan

    return TorchPlan(devices)


def env_int(name, value=None):
    """`value` if given, else the integer in environment variable `name`, else None."""
    if value is not None:
        return value
    text = os.environ.get(name)
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"Environment variable {name}={text!r} must be an integer.") from None
