"""The TFDS dataset `utkface`: build it with `build()` or `tfds build agejax/utkface --manual_dir DIR`."""

from agejax.data.utkface.utkface_dataset_builder import Builder, build

__all__ = ["Builder", "build"]
