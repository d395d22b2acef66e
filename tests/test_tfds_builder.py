import numpy as np
import tensorflow_datasets as tfds

from agejax.data.utkface import build

from conftest import MALFORMED, write_archive


def test_builder_writes_array_record_splits_readable_without_tensorflow(tmp_path, utk_folder, manifest_names):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    write_archive(manual_dir / "UTKFace.tar.gz", utk_folder)
    build(manual_dir, tmp_path / "tfds")

    source = tfds.data_source("utkface", data_dir=str(tmp_path / "tfds"))
    assert {name: len(part) for name, part in source.items()} == {"train": 6, "val": 6, "test": 6}
    names = set()
    for part, records in source.items():
        for example in records:
            name = example["file_name"].decode()
            names.add(name)
            assert name in manifest_names[part]
            assert example["age"] == int(name.split("_")[0])
            assert example["gender"] == int(name.split("_")[1])
            assert example["race"] == int(name.split("_")[2])
            assert example["image"].shape == (40, 40, 3) and example["image"].dtype == np.uint8
    assert not names & set(MALFORMED)
    assert list((tmp_path / "tfds" / "utkface" / "1.0.0").glob("*.array_record*"))
