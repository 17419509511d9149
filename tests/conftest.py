"""Shared fixtures. The backend is fixed per pytest run by KERAS_BACKEND."""

import atexit
import gzip
import os
import shutil
import subprocess
import sys
import tempfile

# One jax compilation cache per test session, set before jax is imported: the
# tests compile the same small train steps again and again, in this process and
# in the CLI and worker processes they start (which inherit the environment).
# Compilation is most of a jax test's time on CPU; the cache changes no result.
_jax_cache = tempfile.mkdtemp(prefix="keras-pretrain-jax-cache-")
atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _jax_cache)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# XLA (jax, and TensorFlow's jit_compile) skips LLVM's optimisation of the machine code it
# emits: the tests' steps are tiny, so compiling was most of their time (the two recipe
# test files on jax: 110 against 147 s). The compiled programs are the same; only their
# machine code is less optimised.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import keras  # noqa: E402
import numpy as np
import pytest


def write_idx(path, array):
    """Write a uint8 array as a gzipped IDX file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def synthetic_fashion_mnist(directory, train=400, test=100, seed=0):
    """Four IDX files of learnable fake data: each class is a bright band at its own rows."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 60, (count, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 3 : 2 * label + 6, 4:24] = 230
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return directory


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    return synthetic_fashion_mnist(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1)).astype("uint8")


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def run_python(code, backend=None, **kwargs):
    """Run `python -c code` in a fresh process; return the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend:
        env["KERAS_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, **kwargs)


WORDNET_WORDS = {  # lexicographer file number -> words its synthetic glosses are made of
    4: "running jumping the act of moving quickly", 5: "a furry animal with four legs that barks",
    6: "a metal tool made by people for cutting", 10: "a written message or spoken word in a language",
    13: "a sweet food eaten at dinner with bread", 15: "a city region or place on the map near a river",
    18: "a person who works as a teacher or doctor", 20: "a green plant with leaves and flowers that grows",
    7: "a quality or attribute of being large",
}


def synthetic_wordnet(directory, per_category=12, seed=0):
    """WordNet-format `data.{noun,verb,adj,adv}` files with learnable glosses: each category has its own words."""
    rng = np.random.default_rng(seed)
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton University\n"
    lines, offset = [], 0
    for lex, words in WORDNET_WORDS.items():
        words = words.split()
        for i in range(per_category):
            gloss = " ".join(rng.choice(words, 6)) + f' number {i}; "an example {i}"'
            lines.append(f"{offset:08d} {lex:02d} n 01 thing{i} 0 000 | {gloss}  \n")
            offset += 1
    (directory / "data.noun").write_text(header + "".join(lines))
    for pos, gloss in (("verb", "move fast on foot"), ("adj", "very large in size"), ("adv", "in a quick manner")):
        (directory / f"data.{pos}").write_text(header + f"{offset:08d} 29 {pos[0]} 01 word 0 000 | {gloss}  \n")
    return directory


@pytest.fixture(scope="session")
def wordnet_dir(tmp_path_factory):
    return synthetic_wordnet(tmp_path_factory.mktemp("wordnet"))


def write_image_folder(directory, per_class=12, classes=("circle", "square"), seed=0):
    """One subfolder per class of learnable PNGs in mixed sizes and colour modes: each class has a bright band of its own."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (20, 20) if i % 3 else (37, 23)
            image = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            band = slice(size[0] * label // len(classes), size[0] * (label + 1) // len(classes))
            image[band] = 230
            mode = "L" if i % 2 else "RGB"
            Image.fromarray(image).convert(mode).save(directory / name / f"{i:03d}.png")
    return directory


def write_labelled_csv(path, per_class=12, seed=0):
    """A CSV with `text` and `label` columns whose classes use different words (learnable by TF-IDF)."""
    import csv

    words = {"sport": "ball goal team match score player win", "cooking": "pan salt bake oven flour sugar taste"}
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(per_class):
            for label, vocabulary in words.items():
                writer.writerow([" ".join(rng.choice(vocabulary.split(), 6)) + f", item {i}", label])
    return path
