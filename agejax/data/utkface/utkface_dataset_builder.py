"""TFDS builder for UTKFace (aligned & cropped faces), split by agejax's frozen manifest.

Written as array_record, so `tfds.data_source("utkface", data_dir=...)` reads it
with random access and without TensorFlow.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from agejax.data import labels, split

_DESCRIPTION = """\
UTKFace aligned & cropped faces: 200x200 chips labelled with age (0-116),
gender and race from their file names. Splits come from agejax's frozen
manifest (agejax/splits/utkface.csv). Licence: non-commercial research only.
"""

_CITATION = """\
@inproceedings{zhifei2017cvpr,
  title={Age Progression/Regression by Conditional Adversarial Autoencoder},
  author={Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""


class Builder(tfds.core.GeneratorBasedBuilder):
    """UTKFace with the agejax frozen train/val/test split."""

    name = "utkface"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Frozen agejax split (80/10/10, stratified by age and gender)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download UTKFace "Aligned&Cropped Faces" (UTKFace.tar.gz) from the authors'
    page (https://susanqq.github.io/UTKFace/), then put into `manual_dir` either
    the archive(s) (UTKFace.tar.gz, or parts such as UTKFace-1of4.tar.gz ...) or
    the extracted folder of *.jpg.chip.jpg files.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "age": tfds.features.Scalar(dtype=np.int32),
                    "gender": tfds.features.ClassLabel(names=labels.GENDERS),
                    "race": tfds.features.ClassLabel(names=labels.RACES),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "age"),
            homepage="https://susanqq.github.io/UTKFace/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = Path(dl_manager.manual_dir)
        archives = sorted(p for p in manual_dir.iterdir() if labels.is_archive(p))
        scan = labels.scan(archives or [manual_dir])
        print(scan.report())
        parts = split.apply_manifest(scan.records, split.read_manifest())
        print(parts.report())
        return {name: self._generate_examples(parts.by_split[name]) for name in split.SPLITS}

    def _generate_examples(self, records: list[labels.Record]):
        for record, payload in labels.iter_image_bytes(records):
            if payload is None or not _is_rgb_jpeg(payload):
                print(f"skipped unreadable or non-RGB-JPEG image: {record.file_name}")
                continue
            yield record.file_name, {
                "image": payload,
                "age": record.age,
                "gender": record.gender,
                "race": record.race,
                "file_name": record.file_name,
            }


def _is_rgb_jpeg(payload: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return image.format == "JPEG" and image.mode == "RGB"
    except Exception:  # any decode failure means: skip this file
        return False


def build(manual_dir: str | Path, data_dir: str | Path) -> Builder:
    """Builds (or reuses) the dataset; read it with tfds.data_source("utkface", data_dir=data_dir)."""
    builder = Builder(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder
