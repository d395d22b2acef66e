"""agejax: age estimation from face images with Keras 3 on JAX.

Importing agejax does no work. Commands call ``agejax.runtime.setup()`` before JAX starts.
"""

import os
from pathlib import Path

# Keras reads its backend once, at its first import; agejax's models are written for JAX.
os.environ.setdefault("KERAS_BACKEND", "jax")

# Decoded data and compiled code live here (AGEJAX_CACHE overrides), outside any work tree.
CACHE_ROOT = Path(os.environ.get("AGEJAX_CACHE", Path.home() / ".cache" / "agejax"))
# What the repository ships beside the code (checkpoints/, examples/, benchmark results):
# a checkout keeps it at its root, an installed wheel inside the package (pyproject.toml).
_PACKAGE = Path(__file__).resolve().parent
SHIPPED_ROOT = _PACKAGE if (_PACKAGE / "checkpoints").is_dir() else _PACKAGE.parent

__version__ = "0.3.0"
