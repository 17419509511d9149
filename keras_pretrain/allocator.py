"""`keep_freed_memory`: glibc keeps freed memory in one heap, so a training step reuses its buffers.

XLA:CPU gives each execution of a JAX train step its temporaries as one
block (310 MB for the MAE step of `keras-pretrain bench`); TensorFlow and
PyTorch allocate each large tensor on its own (TensorFlow with oneDNN, on
by default on CPUs with AVX512_VNNI or AVX512_BF16, pools them itself).
glibc's `malloc` serves large blocks (above a threshold of at most 32 MB)
with a fresh `mmap` and returns them to the kernel when they are freed, so
every step faults its memory in again, page by page: 85,000 page faults and
about a quarter of a second of kernel time per JAX MAE step on a 2-core
machine. The heaps glibc gives
threads other than the main one (the frameworks' step threads) hold at most
64 MB, so larger blocks always take that path there. So, before any framework
starts its threads, `import keras_pretrain` asks glibc for one heap shared by
every thread, grown with `brk` instead of `mmap` and never trimmed: freed
blocks stay in the process and the next step reuses them. The process's
resident memory then stays at its peak until it exits, as with the frameworks'
own GPU allocators. A library that calls glibc's `malloc_trim` still hands
the kept pages back: protobuf's Python runtime does, once every 10,000
messages it frees, which TensorFlow makes by the thousand while it traces
functions (building a `tf.data` pipeline, say); the steps after fault their
memory in again, and then reuse it.

Set `KERAS_PRETRAIN_KEEP_FREED_MEMORY=0` to keep glibc's defaults. Other C
libraries (macOS, Windows, musl) are left alone.
"""

import ctypes
import functools
import os

OPT_OUT = "KERAS_PRETRAIN_KEEP_FREED_MEMORY"

# mallopt's options, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


@functools.cache
def keep_freed_memory():
    """Make glibc keep freed memory for reuse (see the module docstring); True when it took effect.

    `import keras_pretrain` calls it, because it only reaches threads that
    have not allocated yet: importing keras first is fine, running a
    computation on the backend first is not.

    Example:
    >>> from keras_pretrain.allocator import keep_freed_memory
    >>> keep_freed_memory()      # on Linux with glibc, unless KERAS_PRETRAIN_KEEP_FREED_MEMORY=0
    True
    """
    setting = os.environ.get(OPT_OUT, "1")
    if setting not in ("0", "1"):
        raise ValueError(f"{OPT_OUT}={setting!r}: set it to 1 (keep freed memory, the default) or 0 (glibc's defaults)")
    if setting == "0":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has these options
    except (OSError, TypeError, AttributeError):
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    applied = [libc.mallopt(option, value) == 1 for option, value in settings]  # each tried, even after a refusal
    return all(applied)
