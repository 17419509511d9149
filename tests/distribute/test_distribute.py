"""Multi-device and multi-process training on CPU, one backend's engine per test.

Each engine needs a fresh process (virtual devices and process groups are
fixed at start-up), so the tests start `tests.distribute.workers` with the
right environment. Each runs once, in the pytest pass of its own backend.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_pretrain import cli, distribute
from keras_pretrain.distribute import DistributionPlan

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[2]
# Lower XLA's CPU optimisation: it halves compile time and these models are tiny.
JAX_FLAGS = "--xla_backend_optimization_level=0"


def only_on(backend):
    return pytest.mark.skipif(
        BACKEND != backend, reason=f"starts {backend} processes; runs once, in the {backend} pass"
    )


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_worker(args, backend, **env):
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_all(processes, timeout=300):
    for process in processes:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output[-3000:]


@pytest.mark.slow
@only_on("jax")
def test_jax_data_and_model_parallel_on_8_devices_match_one_device(tmp_path):
    out = tmp_path / "jax.npz"
    wait_all([start_worker(["-m", "tests.distribute.workers", "jax_devices", str(out)], "jax",
                           XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {JAX_FLAGS}")])
    r = np.load(out)
    assert str(r["describe"][0]).startswith("8 data-parallel replicas")
    assert str(r["describe"][1]).startswith("4 data-parallel replicas x 2-way model parallelism")
    np.testing.assert_allclose(r["dp_losses"], r["single_losses"], rtol=1e-5)
    np.testing.assert_allclose(r["mp_losses"], r["single_losses"], rtol=1e-5)
    np.testing.assert_allclose(r["dp_weights"], r["single_weights"], atol=1e-5)
    np.testing.assert_allclose(r["mp_weights"], r["single_weights"], atol=1e-5)
    assert r["mp_losses"][-1] < r["mp_losses"][0]
    np.testing.assert_allclose(r["dp_mlm_losses"], r["single_mlm_losses"], rtol=1e-5)
    np.testing.assert_allclose(r["dp_mlm_weights"], r["single_mlm_weights"], atol=1e-5)
    # Every attention and MLP kernel of the encoder and the decoder is split on "model".
    specs = {path.split("/", 1)[1]: spec for path, spec in r["specs"]}
    shards = {path.split("/", 1)[1]: shape for path, shape in r["shard_shapes"]}
    for block, width, heads, mlp_width in (("vit_encoder/block_0", 32, 2, 64), ("decoder_block_0", 16, 2, 64)):
        head_dim = width // heads
        for name in ("query", "key", "value"):
            assert specs[f"{block}/self_attention_layer/{name}/kernel"] == "P(None, 'model', None)"
            assert shards[f"{block}/self_attention_layer/{name}/kernel"] == str((width, 1, head_dim))
        assert specs[f"{block}/self_attention_layer/attention_output/kernel"] == "P('model', None, None)"
        assert specs[f"{block}/feedforward_intermediate_dense/kernel"] == "P(None, 'model')"
        assert shards[f"{block}/feedforward_intermediate_dense/kernel"] == str((width, mlp_width // 2))
        assert specs[f"{block}/feedforward_output_dense/kernel"] == "P('model', None)"
    # Bad configurations, rejected before any model exists.
    model_parallel, coordinator, too_many = r["errors"]
    assert "model_parallel=3 does not divide the 8 devices" in model_parallel
    assert "2 processes need a coordinator address" in coordinator
    assert "9 devices requested but JAX sees 8" in too_many


@pytest.mark.slow
@only_on("jax")
def test_jax_two_processes_on_localhost_end_identical(tmp_path):
    out, port = tmp_path / "run", free_port()
    wait_all([
        start_worker(["-m", "tests.distribute.workers", "data_parallel_run", str(out)], "jax",
                     XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {JAX_FLAGS}",
                     KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}", KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                     KERAS_DISTRIBUTION_PROCESS_ID=str(i))
        for i in range(2)
    ])
    chief, other = np.load(f"{out}.0.npz"), np.load(f"{out}.1.npz")
    assert str(chief["describe"]).startswith("2 data-parallel replicas over 2 processes")
    np.testing.assert_array_equal(chief["weights"], other["weights"])
    np.testing.assert_array_equal(chief["losses"], other["losses"])
    np.testing.assert_array_equal(chief["mlm_weights"], other["mlm_weights"])


@pytest.mark.slow
@only_on("tensorflow")
def test_tensorflow_mirrored_on_2_cpus_logs_the_global_loss(tmp_path):
    out = tmp_path / "run"
    wait_all([start_worker(["-m", "tests.distribute.workers", "data_parallel_run", str(out)], "tensorflow")])
    r = np.load(f"{out}.0.npz")
    assert str(r["describe"]).startswith("2 data-parallel replicas (tensorflow, tf.distribute.MirroredStrategy)")
    # Not 2x: the objective scales its loss by the replica count.
    np.testing.assert_allclose(r["losses"], r["single_losses"], rtol=1e-5)
    np.testing.assert_allclose(r["weights"], r["single_weights"], atol=1e-5)
    np.testing.assert_array_equal(r["replica_weights"][0], r["replica_weights"][1])
    np.testing.assert_allclose(r["mlm_losses"], r["single_mlm_losses"], rtol=1e-5)
    np.testing.assert_allclose(r["mlm_weights"], r["single_mlm_weights"], atol=1e-5)


@pytest.mark.slow
@only_on("torch")
def test_torch_two_gloo_ranks_under_torchrun_match_one_process(tmp_path):
    out = tmp_path / "run"
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    wait_all([start_worker([*launcher, "-m", "tests.distribute.workers", "data_parallel_run", str(out)], "torch")])
    chief, other = np.load(f"{out}.0.npz"), np.load(f"{out}.1.npz")
    assert str(chief["describe"]).startswith("2 data-parallel replicas over 2 processes (torch, torch.distributed (gloo))")
    np.testing.assert_array_equal(chief["weights"], other["weights"])
    np.testing.assert_array_equal(chief["losses"], other["losses"])  # epoch logs are averaged over ranks
    np.testing.assert_allclose(chief["losses"], chief["single_losses"], rtol=1e-5)
    np.testing.assert_allclose(chief["weights"], chief["single_weights"], atol=1e-5)
    np.testing.assert_array_equal(chief["mlm_weights"], other["mlm_weights"])
    np.testing.assert_allclose(chief["mlm_losses"], chief["single_mlm_losses"], rtol=1e-5)
    np.testing.assert_allclose(chief["mlm_weights"], chief["single_mlm_weights"], atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="averages torch gradients of Keras variables: torch backend only")
def test_torch_gradient_average_keeps_missing_gradients_missing_and_dtypes():
    import torch
    import torch.distributed as dist

    from keras_pretrain.distribute.torch_plan import average_over_ranks

    # A one-rank group in this process; destroyed after, so later tests see no group.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        variables = [keras.Variable(np.zeros((2, 3), "float32")), keras.Variable(np.zeros(4, "float16")),
                     keras.Variable(np.zeros(2, "float32"))]
        gradients = [torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.full((4,), 0.5, dtype=torch.float16), None]
        averaged = average_over_ranks(gradients, variables)
    finally:
        dist.destroy_process_group()
    np.testing.assert_array_equal(averaged[0].numpy(), np.arange(6).reshape(2, 3))
    assert averaged[1].dtype == torch.float16 and averaged[1].tolist() == [0.5] * 4
    assert averaged[2] is None  # no rank had a gradient: Keras's optimizer must still see None


def test_global_batch_must_split_over_replicas():
    images = np.zeros((40, 28, 28, 1), "uint8")
    plan = DistributionPlan(num_replicas=4)
    with pytest.raises(ValueError, match="global batch size 30 must be a positive multiple of the 4 data-parallel"):
        plan.fit_arguments(images, batch_size=30)
    with pytest.raises(ValueError, match="40 examples make no full global batch of 64"):
        plan.fit_arguments(images, batch_size=64)
    # One device: fit gets the arrays as they are.
    assert DistributionPlan().fit_arguments(images, 30) == {"x": images, "batch_size": 30, "shuffle": True}


def test_bad_configurations_fail_before_training(monkeypatch):
    with pytest.raises(ValueError, match="only apply to distributed training"):
        distribute.setup(devices=2)
    with pytest.raises(ValueError, match="model_parallel must be at least 1"):
        distribute.setup(model_parallel=0)
    if BACKEND == "jax":  # this process sees one CPU device
        with pytest.raises(ValueError, match="model_parallel=2 does not divide the 1 devices"):
            distribute.setup(model_parallel=2)
        with pytest.raises(ValueError, match="need a coordinator address"):
            distribute.setup(data_parallel=True, num_processes=2)
    else:
        with pytest.raises(ValueError, match="needs the JAX backend"):
            distribute.setup(model_parallel=2)
        with pytest.raises(ValueError, match="are JAX options"):
            distribute.setup(data_parallel=True, coordinator_address="localhost:1234")
    if BACKEND == "torch":
        for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ValueError, match="torchrun --nproc_per_node"):
            distribute.setup(data_parallel=True)


def test_cli_rejects_a_bad_configuration_before_loading_data(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # --devices sets it: restored after the test
    code = cli.main(["run", "mae_fashion_mnist", "--data-dir", str(tmp_path / "absent"), "--model-parallel", "3",
                     "--devices", "4"])
    assert code == 1
    error = capsys.readouterr().err
    # The plan is checked first: the missing data directory is never reached.
    assert "does not divide the 4 devices" in error or "needs the JAX backend" in error or "4 devices requested" in error
    assert "absent" not in error
