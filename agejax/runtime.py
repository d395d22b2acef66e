"""The process set-up that agejax's commands call before JAX starts: a compilation cache on disk,
one CPU device per core, and enough XLA threads for those devices' collectives. Library code
never calls it; importing agejax changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

from agejax import CACHE_ROOT

COMPILATION_CACHE_BYTES = 2 * 2**30  # least recently used programs are evicted beyond this


def setup(devices_per_core: bool = True) -> None:
    """Call once, before the first JAX import: the CLIs, the demo and the benchmarks do.

    Keeps compiled XLA programs under ``CACHE_ROOT/xla`` and, with ``devices_per_core``,
    splits the CPU into one JAX device per core unless XLA_FLAGS already says how many.
    Variables already set by the caller win.
    """
    use_compilation_cache()
    if devices_per_core:
        one_device_per_core()
    enough_client_threads()


def use_compilation_cache() -> None:
    """Keeps compiled XLA programs on disk, so a second run of any command skips compiling.

    JAX keys each entry by its program, compile options and JAX version, so another
    model or another JAX simply misses. Where the folder cannot be written, nothing is
    set and every run compiles, as without a cache.
    """
    directory = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR", CACHE_ROOT / "xla"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not os.access(directory, os.W_OK | os.X_OK):
        return
    drop_unfinished_entries(directory)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(directory))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # Keras' many small ones too
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(COMPILATION_CACHE_BYTES))
    # A damaged or unwritable entry only means compiling again: not worth a warning.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry")


def drop_unfinished_entries(directory: Path) -> None:
    """Deletes entries whose write never finished: a ``-cache`` file without its ``-atime`` file.

    JAX writes an entry's ``-atime`` file after its ``-cache`` file and never rewrites an
    entry that exists, so a write cut short (a kill, a full disk) would miss forever; with a
    size limit, JAX 0.10 also fails every later write while such a file exists
    (jax-ml/jax#39880).
    """
    try:
        names = set(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if name.endswith("-cache") and name.removesuffix("-cache") + "-atime" not in names:
            with contextlib.suppress(OSError):
                os.unlink(directory / name)


def one_device_per_core() -> None:
    """One JAX CPU device per core (a power of two, at most 8), unless XLA_FLAGS already says how many.

    Prediction with Keras then runs data-parallel, each core on its own share of a batch.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = 1 << (min(os.cpu_count() or 1, 8).bit_length() - 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def enough_client_threads() -> None:
    """Two XLA:CPU client threads per device when XLA_FLAGS asks for several, unless PJRT_NPROC is set.

    XLA:CPU runs every device's program on one pool of threads, as many as cores by default,
    and a waiting task keeps its thread: a device's program waiting in an all-reduce for the
    other devices, and a launch waiting for a device's queue of programs in flight to shorten.
    With 2 threads for 2 devices, one of each leaves the other device's program no thread,
    and XLA aborts the all-reduce after 40 s ("only 1 of them arrived on time"). Training ran
    into this when Python had queued enough steps ahead; two threads per device always leave
    one for every device's program.
    """
    match = re.search(r"xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    devices = int(match.group(1)) if match else 1
    if devices > 1:
        os.environ.setdefault("PJRT_NPROC", str(max(os.cpu_count() or 1, 2 * devices)))
