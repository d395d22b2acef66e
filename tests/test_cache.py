import numpy as np
import pytest

from agejax.data import cache, split
from agejax.data.images import decode_face

from conftest import write_archive


def test_build_then_load_matches_direct_decoding(tmp_path, utk_folder, manifest_names):
    (utk_folder / manifest_names["test"][0]).write_bytes(b"not a jpeg at all")
    archive = write_archive(tmp_path / "UTKFace.tar.gz", utk_folder)
    summary = cache.build([archive], size=24, root=tmp_path / "cache", workers=2, progress=False)

    assert summary.sizes == {"train": 6, "val": 6, "test": 5}
    assert [s.file_name for s in summary.skipped if "unreadable" in s.reason] == [manifest_names["test"][0]]
    for part in split.SPLITS:
        arrays = cache.load_split(part, 24, tmp_path / "cache")
        assert isinstance(arrays.images, np.memmap)
        assert arrays.images.shape == (len(arrays), 24, 24, 3) and arrays.images.dtype == np.uint8
        assert list(arrays.file_names) == sorted(set(manifest_names[part]) - {manifest_names["test"][0]})
        first = arrays.file_names[0]
        np.testing.assert_array_equal(arrays.images[0], decode_face((utk_folder / first).read_bytes(), 24))
        assert arrays.ages[0] == int(first.split("_")[0])


def test_missing_cache_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_data.py"):
        cache.load_split("train", 32, tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        cache.load_split("dev", 32, tmp_path)


def test_rebuild_replaces_the_old_cache(tmp_path, utk_folder):
    root = tmp_path / "cache"
    cache.build([utk_folder], size=16, root=root, progress=False)
    before = cache.load_split("train", 16, root, mmap=False).images.copy()
    cache.build([utk_folder], size=16, root=root, progress=False)
    np.testing.assert_array_equal(cache.load_split("train", 16, root).images, before)
    assert not list(root.glob("*.partial"))
