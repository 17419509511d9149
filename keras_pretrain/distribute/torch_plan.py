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
    broadcasts rank 0's weights when `fit` starts and averages every gradient
    over the ranks as backward produces it, so replicas stay identical. Each
    rank trains on its slice of every global batch; epoch logs are averaged
    over ranks.

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
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
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


class AverageGradients(keras.callbacks.Callback):
    """Keeps torch ranks identical under plain `model.fit`.

    On train begin: broadcast rank 0's variables (seed generator states too)
    and hook every trainable parameter so that, as soon as backward has
    accumulated its gradient, the gradient is all-reduced and divided by the
    world size; Keras's optimizer then applies the averaged gradients. On
    epoch end: average the logged metrics over ranks. On train end: remove
    the hooks.
    """

    def on_train_begin(self, logs=None):
        with torch.no_grad():
            for variable in self.model.variables:
                dist.broadcast(variable.value.data, src=0)
        world_size = dist.get_world_size()

        def average(parameter):
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world_size)

        self.hooks = [
            variable.value.register_post_accumulate_grad_hook(average) for variable in self.model.trainable_variables
        ]

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        names = sorted(name for name, value in logs.items() if isinstance(value, numbers.Real))
        values = torch.tensor([float(logs[name]) for name in names], dtype=torch.float64)
        dist.all_reduce(values)
        for name, value in zip(names, (values / dist.get_world_size()).tolist()):
            logs[name] = value

    def on_train_end(self, logs=None):
        for hook in self.hooks:
            hook.remove()
