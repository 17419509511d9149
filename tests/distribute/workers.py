"""Training runs the distribution tests start in fresh processes: `python -m tests.distribute.workers NAME OUT`.

Each worker trains a tiny MAE and a tiny masked language model and writes
what the test compares (losses, weights, layouts) to `OUT` (`jax_devices`) or
`OUT.<process id>.npz` (`data_parallel_run`). The backend, device count and
process group come from the environment the test sets.
"""

import sys

import keras
import numpy as np

from keras_pretrain import distribute
from keras_pretrain.models import ViTEncoder
from keras_pretrain.objectives import MaskedAutoencoder, MaskedLanguageModel

GLOBAL_BATCH = 16
EPOCHS = 2


def images(count=48):
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28, 1)).astype("uint8")


def tiny_mae(seed=0):
    keras.utils.set_random_seed(seed)
    encoder = ViTEncoder(hidden_dim=32, depth=1, num_heads=2, mlp_ratio=2)
    mae = MaskedAutoencoder(encoder, decoder_dim=16, decoder_depth=1, decoder_heads=2, seed=seed)
    mae.build((None, 28, 28, 1))
    mae.compile(optimizer=keras.optimizers.SGD(0.5))
    return mae


def token_batches(count=48, length=16):
    """Full-length sequences without special tokens: every replica selects as many tokens, so its
    average over its own selected tokens is the global one."""
    token_ids = np.random.default_rng(1).integers(5, 60, (count, length)).astype("int32")
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}


def tiny_mlm(seed=0):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=60, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=16, dropout=0.0)
    mlm = MaskedLanguageModel(backbone, special_token_ids=[0, 1, 2, 3], mask_token_id=4, mask_rate=0.25, seed=seed)
    mlm.build({"token_ids": (None, 16), "padding_mask": (None, 16)})
    mlm.compile(optimizer=keras.optimizers.SGD(0.5))
    return mlm


MODELS = {"mae": (tiny_mae, images), "mlm": (tiny_mlm, token_batches)}


def train(plan, objective="mae", seed=0):
    """Build, compile and fit under `plan`; return (model, per-epoch losses)."""
    new_model, data = MODELS[objective]
    with plan.scope():
        model = new_model(seed)
        history = model.fit(**plan.fit_arguments(data(), GLOBAL_BATCH, shuffle=False), epochs=EPOCHS, verbose=0)
    return model, np.array(history.history["loss"])


def single_device_arguments(x):
    """The global batches a distributed plan feeds, on one device (same order, remainder dropped)."""
    import tensorflow as tf

    return {"x": tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH, drop_remainder=True)}


def train_single(objective="mae"):
    new_model, data = MODELS[objective]
    model = new_model()
    history = model.fit(**single_device_arguments(data()), epochs=EPOCHS, verbose=0)
    return model, np.array(history.history["loss"])


def flat_weights(model):
    return np.concatenate([np.asarray(w, "float64").ravel() for w in model.get_weights()])


def jax_devices(out):
    """8 virtual CPU devices: DataParallel and ModelParallel against one device.

    JAX steps see the global batch, so all three runs draw the very same masks
    from the same seed: their losses and weights must agree to float precision.
    """
    single, single_losses = train_single()
    data_parallel = distribute.setup(data_parallel=True, devices=8)
    dp, dp_losses = train(data_parallel)
    single_mlm, single_mlm_losses = train_single("mlm")
    dp_mlm, dp_mlm_losses = train(data_parallel, "mlm")

    model_parallel = distribute.setup(model_parallel=2, devices=8)
    mp, mp_losses = train(model_parallel)
    specs = {v.path: str(v.value.sharding.spec) for v in mp.weights if "block_0" in v.path and "kernel" in v.path}
    shard_shapes = {
        v.path: v.value.addressable_shards[0].data.shape for v in mp.weights if "block_0" in v.path and "kernel" in v.path
    }
    errors = []
    for bad in (dict(model_parallel=3, devices=8), dict(data_parallel=True, num_processes=2), dict(data_parallel=True, devices=9)):
        try:
            distribute.setup(**bad)
        except ValueError as error:
            errors.append(str(error))
    np.savez(
        out,
        single_losses=single_losses, dp_losses=dp_losses, mp_losses=mp_losses,
        single_weights=flat_weights(single), dp_weights=flat_weights(dp), mp_weights=flat_weights(mp),
        single_mlm_losses=single_mlm_losses, dp_mlm_losses=dp_mlm_losses,
        single_mlm_weights=flat_weights(single_mlm), dp_mlm_weights=flat_weights(dp_mlm),
        specs=np.array(sorted(specs.items())), shard_shapes=np.array(sorted((k, str(v)) for k, v in shard_shapes.items())),
        errors=np.array(errors), describe=np.array([data_parallel.describe(), model_parallel.describe()]),
    )


def data_parallel_run(out):
    """One process of a multi-process run (JAX processes, torch ranks) or TF on 2 logical CPUs."""
    plan = distribute.setup(data_parallel=True, devices=2 if keras.backend.backend() == "tensorflow" else None)
    # Torch ranks start from different weights and mask seeds: only rank 0's broadcast makes them agree.
    seed = plan.process_id if keras.backend.backend() == "torch" else 0
    model, losses = train(plan, seed=seed)
    mlm, mlm_losses = train(plan, "mlm", seed=seed)
    results = dict(losses=losses, weights=flat_weights(model), mlm_losses=mlm_losses, mlm_weights=flat_weights(mlm),
                   rank=plan.process_id, replicas=plan.num_replicas, describe=plan.describe())
    if keras.backend.backend() == "tensorflow":
        # Each MirroredVariable holds one copy per device: stack them per replica.
        copies = [w.value.values for w in model.weights]
        results["replica_weights"] = np.array(
            [np.concatenate([np.asarray(c[i], "float64").ravel() for c in copies]) for i in range(plan.num_replicas)]
        )
    # The one-device comparison (JAX's is in `jax_devices`), run by the chief after the group is done.
    if plan.is_chief and keras.backend.backend() != "jax":
        if keras.backend.backend() == "torch":
            import torch.distributed as dist

            dist.destroy_process_group()
        single, single_losses = train_single()
        single_mlm, single_mlm_losses = train_single("mlm")
        results.update(single_losses=single_losses, single_weights=flat_weights(single),
                       single_mlm_losses=single_mlm_losses, single_mlm_weights=flat_weights(single_mlm))
    np.savez(f"{out}.{plan.process_id}.npz", **results)


if __name__ == "__main__":
    {"jax_devices": jax_devices, "data_parallel_run": data_parallel_run}[sys.argv[1]](sys.argv[2])
