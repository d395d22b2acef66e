"""agejax: age estimation from face images with Keras 3 on JAX."""

import contextlib
import os
import warnings
from pathlib import Path

# Keras reads the backend once, at its first import: agejax only runs on JAX. Python runs
# this file before any agejax module, so their own `import keras` comes after it.
os.environ["KERAS_BACKEND"] = "jax"

# Decoded data and compiled code live here (AGEJAX_CACHE overrides), outside any work tree.
CACHE_ROOT = Path(os.environ.get("AGEJAX_CACHE", Path.home() / ".cache" / "agejax"))
# What the repository ships beside the code (checkpoints/, examples/, benchmark results):
# a checkout keeps it at its root, an installed wheel inside the package (pyproject.toml).
_PACKAGE = Path(__file__).resolve().parent
SHIPPED_ROOT = _PACKAGE if (_PACKAGE / "checkpoints").is_dir() else _PACKAGE.parent

COMPILATION_CACHE_BYTES = 2 * 2**30  # least recently used programs are evicted beyond this


def _use_compilation_cache() -> None:
    """Keeps compiled XLA programs on disk, so a second run of any command skips compiling.

    JAX keys each entry by its program, compile options and JAX version, so another
    model or another JAX simply misses. Where the folder cannot be written, nothing is
    set and every run compiles, as without a cache. JAX reads these variables when it is
    first imported, which agejax's modules do after this.
    """
    directory = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR", CACHE_ROOT / "xla"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not os.access(directory, os.W_OK | os.X_OK):
        return
    _drop_unfinished_entries(directory)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(directory))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # Keras' many small ones too
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(COMPILATION_CACHE_BYTES))
    # A damaged or unwritable entry only means compiling again: not worth a warning.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry")



def _drop_unfinished_entries(directory: Path) -> None:
    """Deletes entries whose write never finished: a ``-cache`` file without its ``-atime`` file.

    JAX writes an entry's ``-atime`` file after its ``-cache`` file and never rewrites an
    entry that exists, so a write cut short (a kill, a full disk) would miss forever; with a
    size limit, JAX 0.10 also fails every later write while such a file exists
    (jax-ml/jax#39880). Listing the folder costs milliseconds.
    """
    try:
        names = set(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if name.endswith("-cache") and name.removesuffix("-cache") + "-atime" not in names:
            with contextlib.suppress(OSError):
                os.unlink(directory / name)


def _one_device_per_core() -> None:
    """Splits the CPU into one JAX device per core (a power of two, at most 8), unless XLA_FLAGS
    already says how many.

    Training and prediction then run data-parallel, each core on its own share of a batch:
    on 2 cores the CNN scores a batch of 64 faces about 1.7x faster than as one device
    threaded over both (`python benchmarks/batch_speed.py`). Set before JAX is imported.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = 1 << (min(os.cpu_count() or 1, 8).bit_length() - 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


_use_compilation_cache()
_one_device_per_core()

__version__ = "0.1.0"
