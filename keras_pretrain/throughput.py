"""Training throughput: samples (or tokens) per second and model FLOPs utilisation (MFU), in the logs as they run.

MFU is the share of the machine's peak that the model's own arithmetic
uses: samples/s x FLOPs per sample / peak FLOP/s. FLOPs per sample count
6 per parameter per token a layer sees (forward and backward) plus the
attention scores, `12 x layers x width x tokens**2` (as nanoGPT counts); the
peak is a matrix product in the model's compute dtype (bfloat16 under
`mixed_bfloat16`) timed on this machine with the training backend, unless
given (a card's datasheet peak, for instance).

Example:
>>> peak = matmul_peak_flops()                                      # FLOP/s, this backend
>>> model.fit(data, callbacks=[Throughput(256, model.flops_per_sample(), peak)])   # logs samples_per_second, mfu
"""

import time

import keras
import numpy as np
from keras import ops


def matmul_peak_flops(size=2048, repeats=5, dtype=None):
    """FLOP/s of a `size` x `size` matrix product on the Keras backend: the best of `repeats` timings.

    `dtype` defaults to the compute dtype of Keras's global dtype policy
    (float32, or bfloat16 under `mixed_bfloat16`). A timing waits for one
    element of the product, not for a copy of all of it (on a GPU, that copy
    to the host would be most of what was timed).

    Example:
    >>> matmul_peak_flops() / 1e9        # about 140 on 2 CPU cores
    >>> matmul_peak_flops(dtype="bfloat16")
    """
    dtype = dtype or keras.config.dtype_policy().compute_dtype
    rng = np.random.default_rng(0)
    a, b = (ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype) for _ in range(2))

    def product():
        float(ops.convert_to_numpy(ops.cast(ops.matmul(a, b)[0, 0], "float32")))

    product()  # warm-up (and compilation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def transformer_flops(parameters, tokens, layers, width):
    """Training FLOPs of one sample through a transformer stack: `6 * parameters * tokens` plus attention scores."""
    return 6 * parameters * tokens + 12 * layers * width * tokens**2


def count_parameters(*layers):
    """The number of trainable parameters of some layers (or models), each counted once."""
    seen = {}
    for layer in layers:
        for variable in layer.trainable_weights:
            seen[id(variable)] = int(np.prod(variable.shape))
    return sum(seen.values())


class Throughput(keras.callbacks.Callback):
    """Adds `samples_per_second` (or `tokens_per_second`) and `mfu` to `fit`'s logs: the progress bar shows
    them per batch (averaged since the epoch began), and the epoch logs, which go to `History` and
    `TensorBoard`, hold the epoch's averages.

    Args:
        samples_per_step: samples (or tokens, with `unit="tokens"`) one training step processes.
        flops_per_sample: training FLOPs per sample (or per token); None leaves MFU out.
        peak_flops: the machine's peak FLOP/s (default: measured with `matmul_peak_flops` in the model's
            compute dtype).
    """

    def __init__(self, samples_per_step, flops_per_sample=None, peak_flops=None, unit="samples"):
        super().__init__()
        self.samples_per_step = samples_per_step
        self.flops_per_sample = flops_per_sample
        self.peak_flops = peak_flops
        self.key = f"{unit}_per_second"
        self._start = None
        self._steps = 0

    def on_train_begin(self, logs=None):
        if self.flops_per_sample and self.peak_flops is None:
            self.peak_flops = matmul_peak_flops(dtype=self.model.dtype_policy.compute_dtype)

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def _rates(self):
        rate = self._steps * self.samples_per_step / max(time.perf_counter() - self._start, 1e-9)
        rates = {self.key: rate}
        if self.flops_per_sample:
            rates["mfu"] = rate * self.flops_per_sample / self.peak_flops
        return rates

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if logs is not None:
            logs.update(self._rates())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._steps:
            logs.update(self._rates())
