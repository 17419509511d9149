"""PyTorch: `torch.distributed` data parallelism inside the standard Keras torch trainer."""

import numbers
import os

import keras
import torch
import torch.distributed as dist

from keras_pretrain.distribute.plan import DistributionPlan

TORCHRUN_HINT = "launch one process per device with torchrun, e.g. `torchrun --nproc_per_node=2 -m keras_pretrain.cli run ...`"


class TorchPlan(DistributionPlan):
    """Synchronous data parallelism with `torch.distributed`, one process per device.

    Processes come from `torchrun` (which sets `RANK`, `WORLD_SIZE`,
    `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`); the group uses nccl on GPUs
    and gloo on CPU. Keras's torch trainer stays as is: the plan's callback
    broadcasts rank 0's weights when `fit` starts and averages every step's
    gradients over the ranks before the optimizer applies them, so replicas
    stay identical. Each rank trains on its slice of every global batch;
    epoch logs are averaged over ranks.

    Example (in a script started by `torchrun --nproc_per_node=2 train.py`):
    >>> plan = TorchPlan()
    >>> mae.fit(**plan.fit_arguments(images, batch_size=256), epochs=2,
    ...         verbose=1 if plan.is_chief else 0)
    """

    engine = "torch.distributed"

    def __init__(self, devices=None):
        missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing and not dist.is_initialized():
            raise ValueError(f"Data parallelism on torch needs {', '.join(missing)}: {TORCHRUN_HINT}.")
        world_size = dist.get_world_size() if dist.is_initialized() else int(os.environ["WORLD_SIZE"])
        if devices is not None and devices != world_size:
            raise ValueError(f"devices={devices} but torchrun started {world_size} processes: {TORCHRUN_HINT}.")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            # Gradients travel on the GPU (nccl); epoch logs are small CPU tensors (gloo).
            dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        self.engine = f"torch.distributed ({dist.get_backend()})"
        super().__init__(dist.get_world_size(), 1, dist.get_world_size(), dist.get_rank())

    def shard(self, dataset):
        """Every rank reads the same global batches and keeps its contiguous slice."""
        size = self.num_replicas
        start = self.process_id

        def slice_batch(batch):
            local = keras.ops.shape(keras.tree.flatten(batch)[0])[0] // size
            return keras.tree.map_structure(lambda x: x[start * local : (start + 1) * local], batch)

        return dataset.map(slice_batch)

    def callbacks(self):
        return [AverageGradients()]

    @property
    def input_shard(self):
        return self.process_id, self.num_processes

    def agree_min(self, value):
        value = torch.tensor(int(value), dtype=torch.int64)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return int(value)


class AverageGradients(keras.callbacks.Callback):
    """Keeps torch ranks identical under plain `model.fit`.

    On train begin: broadcast rank 0's model and optimizer variables (seed
    generator states and a restored optimizer state too), and wrap the
    optimizer's `apply` so that each step's gradients are averaged over the
    ranks in one all-reduce before Keras applies them. A gradient missing
    (None) on some ranks counts as zeros there; one missing on every rank
    stays None, as Keras expects. On epoch end: average the logged metrics
    over ranks. On train end: unwrap the optimizer.

    Put it first among `fit`'s callbacks: callbacks before it see one rank's
    epoch logs (an `EarlyStopping` there could stop ranks apart). Per-batch
    logs are the rank's own. Not kept in sync after the broadcast: state a
    layer updates outside the optimizer (BatchNorm moving statistics; the
    package's models have none), and Keras dropout draws the same mask
    pattern on every rank.
    """

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        with torch.no_grad():
            for variable in [*self.model.variables, *optimizer.variables]:
                dist.broadcast(variable.value.data, src=0)
        apply = optimizer.apply

        def apply_averaged(gradients, trainable_variables=None):
            variables = self.model.trainable_variables if trainable_variables is None else trainable_variables
            return apply(average_over_ranks(gradients, variables), trainable_variables)

        optimizer.apply = apply_averaged  # an instance attribute: removing it restores the class's method

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        names = sorted(name for name, value in logs.items() if isinstance(value, numbers.Real))
        values = torch.tensor([float(logs[name]) for name in names], dtype=torch.float64)
        dist.all_reduce(values)
        for name, value in zip(names, (values / dist.get_world_size()).tolist()):
            logs[name] = value

    def on_train_end(self, logs=None):
        vars(self.model.optimizer).pop("apply", None)


def average_over_ranks(gradients, variables):
    """Gradients averaged over all ranks in one flat float32 all-reduce.

    The flat buffer also counts, per variable, the ranks that had a gradient,
    so a variable no rank computed a gradient for stays None.
    """
    present = [g is not None for g in gradients]
    parts = [(g if g is not None else torch.zeros_like(v.value)).reshape(-1).float() for g, v in zip(gradients, variables)]
    counts = torch.tensor(present, dtype=torch.float32, device=parts[0].device)
    flat = torch.cat([*parts, counts])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    chunks = flat.split([p.numel() for p in parts] + [len(parts)])
    any_rank = chunks[-1] > 0
    return [
        chunk.view_as(v.value).to(v.value.dtype) if any_rank[i] else None
        for i, (chunk, v) in enumerate(zip(chunks[:-1], variables))
    ]
