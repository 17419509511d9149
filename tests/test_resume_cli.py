"""A real `keras-pretrain run`, stopped (SIGTERM) during pre-training, resumed and killed (SIGKILL), then rerun: it
resumes and ends with the weights of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.conftest import write_image_folder

SMALL = ["--labels-per-class", "2", "--set", "encoder.hidden_dim=16", "encoder.depth=1", "encoder.num_heads=2",
         "mae.decoder_dim=16", "pretrain.steps=100", "pretrain.batch_size=8", "pretrain.checkpoint_every=10",
         "evaluation.val_per_class=2", "evaluation.finetune_epochs=1", "evaluation.curve_labels_per_class=[]",
         "evaluation.finetune_grid=[(0.001, 0.75)]", "evaluation.scratch_grid=[(0.001, None)]", "export.enabled=False"]


def start(folder, output):
    command = [sys.executable, "-m", "keras_pretrain.cli", "run", "mae_images", "--data", str(folder),
               "--backend", keras.backend.backend(), "--output", str(output), *SMALL]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def checkpoint_step(output):
    try:
        return json.loads((output / "checkpoint" / "state.json").read_text())["step"]
    except FileNotFoundError:  # none yet, or between the two renames of a save
        return None


def stop_at_a_checkpoint(folder, output, signum, after_step=0):
    """Start the run and send `signum` once it has saved a checkpoint past `after_step`."""
    process = start(folder, output)
    deadline = time.time() + 240
    while (checkpoint_step(output) or 0) <= after_step:
        assert process.poll() is None, finish(process)
        assert time.time() < deadline, f"no checkpoint past step {after_step} was written"
        time.sleep(0.05)
    process.send_signal(signum)
    return finish(process)


def encoder_weights(output):
    import keras_pretrain.models  # noqa: F401

    return keras.saving.load_model(output / "encoder.keras").get_weights()


@pytest.mark.slow
def test_stopped_and_killed_runs_resume_to_the_uninterrupted_weights(tmp_path):
    folder = write_image_folder(tmp_path / "shapes", per_class=40)  # epochs of 7 steps
    code, out, err = finish(start(folder, tmp_path / "straight"))
    assert code == 0, err[-2000:]

    interrupted = tmp_path / "interrupted"
    code, _, err = stop_at_a_checkpoint(folder, interrupted, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "Stopped by SIGTERM at step " in err, err[-2000:]
    assert "Rerun the same command to resume." in err and "Traceback" not in err
    stopped_at = checkpoint_step(interrupted)

    # Resumed, then killed once it has saved a checkpoint of its own.
    code, out, _ = stop_at_a_checkpoint(folder, interrupted, signal.SIGKILL, after_step=stopped_at)
    assert code == -signal.SIGKILL
    assert out.splitlines()[0].startswith(f"Resuming from {interrupted}: pre-training checkpoint at step {stopped_at} "), out
    killed_at = checkpoint_step(interrupted)
    code, out, err = finish(start(folder, interrupted))
    assert code == 0, err[-2000:]
    assert out.splitlines()[0].startswith(f"Resuming from {interrupted}: pre-training checkpoint at step {killed_at} ")

    expected = encoder_weights(tmp_path / "straight")
    for a, b in zip(encoder_weights(interrupted), expected):
        np.testing.assert_array_equal(a, b)
    # Run once more: everything is done, so pre-training and the fine-tuned classifiers are reused.
    code, out, err = finish(start(folder, interrupted))
    assert code == 0 and out.splitlines()[0].endswith("its encoder is reused, and 2 fine-tuned classifiers"), out  # scratch, LP-FT
    assert "(trained in an earlier run)" in out
