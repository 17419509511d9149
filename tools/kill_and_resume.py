"""Kill a real `keras-pretrain run` with SIGKILL at several points of pre-training, rerun it each time, and compare
its pre-trained weights with a run that was never interrupted.

    python tools/kill_and_resume.py mae_fashion_mnist --backend jax --kills 3 -- --quick --set pretrain.checkpoint_every=2

Kills land at 1/4, 1/2 and 3/4 of pre-training (for three kills). Prints, for each kill, the checkpoint step it came
after, then the maximum absolute difference over every encoder (or backbone) weight. Each kill lands a random fraction of a checkpoint interval after a checkpoint, so the rerun
repeats some steps.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(recipe, backend, output, extra):
    return [sys.executable, "-m", "keras_pretrain.cli", "run", recipe, "--backend", backend, "--output", str(output),
            *extra]


def checkpoint_step(output):
    try:
        return json.loads((output / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def run_to_end(args, output):
    result = subprocess.run(command(args.recipe, args.backend, output, args.extra), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"run failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.splitlines()


def kill_after(args, output, step):
    """Start the run, SIGKILL it a little after its checkpoint reaches `step`; return the checkpoint step then."""
    process = subprocess.Popen(command(args.recipe, args.backend, output, args.extra), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while checkpoint_step(output) < step:
        if process.poll() is not None:
            sys.exit(f"the run ended (code {process.returncode}) before a checkpoint at step {step}")
        time.sleep(0.02)
    time.sleep(random.uniform(0, args.interval_seconds))
    process.send_signal(signal.SIGKILL)
    process.wait()
    return checkpoint_step(output)


def pretrained_weights(output):
    import keras

    import keras_pretrain.models  # noqa: F401  (registers the package's layers for loading)

    if (output / "encoder.keras").is_file():
        return keras.saving.load_model(output / "encoder.keras").get_weights()
    import keras_hub

    return keras_hub.models.Backbone.from_preset(str(output / "preset")).get_weights()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--interval-seconds", type=float, default=0.5,
                        help="Kill up to this long after the checkpoint (about one checkpoint interval).")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.extra = argv[split + 1:]  # for `keras-pretrain run`
    os.environ["KERAS_BACKEND"] = args.backend
    random.seed(0)
    root = Path(tempfile.mkdtemp(prefix="kill_and_resume_"))
    choices = next(line for line in run_to_end(args, root / "straight") if line.startswith("Choices: "))
    total_steps = int(re.search(r"(\d+) steps", choices).group(1))
    for kill in range(1, args.kills + 1):
        step = kill_after(args, root / "killed", total_steps * kill // (args.kills + 1))
        print(f"kill {kill}: SIGKILL after the checkpoint at step {step}", flush=True)
    first_line = run_to_end(args, root / "killed")[0]
    print(f"rerun: {first_line}")
    import numpy as np

    expected, resumed = pretrained_weights(root / "straight"), pretrained_weights(root / "killed")
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, resumed))
    print(f"{args.recipe} on {args.backend}: {len(expected)} weight arrays, maximum absolute difference {difference:g}")


if __name__ == "__main__":
    main()
