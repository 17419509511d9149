import json

import keras

from keras_pretrain.allocator import OPT_OUT
from tests.conftest import run_python

# Additions of a 64 MB tensor on the test's backend, each result freed before the next: the page faults an
# addition takes once the heap has grown (the median of the last ten of 50), per page of its result. With glibc's
# defaults every result is a fresh mmap (64 MB is above its largest mmap threshold), so each faults every page in
# again. With the setting, about one TensorFlow process in ten grows its heap with fresh pages for the first 11 to
# 17 additions (ending with 0.9 of its 1.1 GB free) before every result reuses freed memory: ten additions of
# warm-up, as this test had, made it fail on a loaded machine.
# TensorFlow runs with oneDNN off: on by default on CPUs with AVX512_VNNI or AVX512_BF16, oneDNN pools large CPU
# tensors in TensorFlow's own allocator, so glibc's settings do not show there (no refaults either way).
FAULTS_PER_PAGE = """
import json, os, resource, statistics
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
import keras_pretrain
from keras_pretrain.allocator import keep_freed_memory
import keras
import numpy as np

x = keras.ops.convert_to_tensor(np.ones((4096, 4096), "float32"))
def faults_adding_and_freeing():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = keras.ops.add(x, 1.0)
    float(keras.ops.convert_to_numpy(y[0, 0]))  # waits for JAX's asynchronous dispatch
    del y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [faults_adding_and_freeing() for _ in range(50)][40:]  # after the heap has grown to its steady size
pages = 64 * 2**20 / resource.getpagesize()
print(json.dumps({"kept": keep_freed_memory(), "faults_per_page": statistics.median(faults) / pages}))
"""


def faults_per_page():
    result = run_python(FAULTS_PER_PAGE, backend=keras.backend.backend())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_package_keeps_freed_memory_for_the_next_step():
    kept = faults_per_page()
    assert kept["kept"] is True
    assert kept["faults_per_page"] < 0.05


def test_opting_out_keeps_glibc_defaults(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    default = faults_per_page()
    assert default["kept"] is False
    assert default["faults_per_page"] > 0.5  # what the setting saves: every page of every result, faulted in again


def test_a_misspelt_setting_fails_the_import_and_names_the_fix(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "false")
    result = run_python("import keras_pretrain", backend=keras.backend.backend())
    assert result.returncode != 0
    assert "KERAS_PRETRAIN_KEEP_FREED_MEMORY='false': set it to 1" in result.stderr.strip().splitlines()[-1]
