"""MAE pre-training throughput on each backend, side by side in one run.

    python tools/benchmark_mae.py [--batch-size 256] [--steps 16] [--backends tensorflow jax torch]

Each backend runs in its own process (the backend is fixed at import), with the
recipe's model, on random uint8 images; the first epoch (compilation) is not
timed. Prints images/s per backend and each one's ratio to the fastest.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, time, numpy as np, keras
from keras_pretrain.pipelines import load_recipe, pipeline_for
mae = pipeline_for(load_recipe("mae_fashion_mnist"), verbose=0).pretrain_model((28, 28, 1), total_steps=1000)
images = np.random.default_rng(0).integers(0, 256, ({n}, 28, 28, 1)).astype("uint8")
mae.fit(images[: 2 * {b}], batch_size={b}, epochs=1, verbose=0)
start = time.perf_counter()
mae.fit(images, batch_size={b}, epochs=1, verbose=0)
print(json.dumps({{"images_per_second": {n} / (time.perf_counter() - start)}}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    args = parser.parse_args()
    code = CHILD.format(n=args.batch_size * args.steps, b=args.batch_size)
    speeds = {}
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"{backend} failed:\n{result.stderr[-2000:]}")
        speeds[backend] = json.loads(result.stdout.splitlines()[-1])["images_per_second"]
    fastest = max(speeds.values())
    print(f"MAE pre-training, batch {args.batch_size}, {args.steps} timed steps:")
    for backend, speed in speeds.items():
        print(f"  {backend:<11} {speed:8.0f} images/s   {speed / fastest:5.2f}x the fastest")


if __name__ == "__main__":
    main()
