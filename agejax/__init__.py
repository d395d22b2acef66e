"""agejax: age estimation from face images with Keras 3 on JAX."""

import os

# Keras reads the backend once, at its first import: agejax only runs on JAX.
os.environ["KERAS_BACKEND"] = "jax"

__version__ = "0.1.0"
