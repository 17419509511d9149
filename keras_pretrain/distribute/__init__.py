"""Training on several devices and hosts, through each backend's own engine.

This package is the only place that branches on the backend for scaling:

- JAX: `keras.distribution.DataParallel`, or `ModelParallel` with a layout map
  that shards the transformer kernels on a `model` mesh axis; several hosts
  through `keras.distribution.initialize`.
- TensorFlow: `tf.distribute.MirroredStrategy` on one host,
  `MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers.
- PyTorch: `torch.distributed` (gloo on CPU, nccl on GPU), one process per
  device launched by `torchrun`; gradients are averaged across ranks inside
  the standard Keras torch trainer, so `model.fit` is unchanged.

Example:
>>> plan = setup(data_parallel=True)  # or setup(model_parallel=2) on JAX
>>> with plan.scope():
...     mae = MaskedAutoencoder(ViTEncoder(), seed=0)
...     mae.compile(optimizer="adamw")
...     mae.fit(**plan.fit_arguments(images, batch_size=256), epochs=10,
...             verbose=1 if plan.is_chief else 0)
"""

from keras_pretrain.distribute.layout import transformer_layout_map
from keras_pretrain.distribute.plan import DistributionPlan, setup
from keras_pretrain.distribute.replica import replica_uniform

__all__ = ["DistributionPlan", "replica_uniform", "setup", "transformer_layout_map"]
