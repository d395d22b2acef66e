"""The same checks on the real UTKFace archives in ../shared; skipped where they are absent."""

import numpy as np

from agejax.data import cache, labels, split

from conftest import MALFORMED, SHARED_UTKFACE, requires_shared

pytestmark = requires_shared


def archives():
    return sorted(SHARED_UTKFACE.glob("UTKFace-*of4.tar.gz"))


def test_real_archives_read_with_the_three_malformed_names_skipped():
    result = labels.scan(archives())
    assert len(result.records) + len(result.skipped) == 22208
    assert sorted(s.file_name for s in result.skipped) == sorted(MALFORMED)
    assert all("malformed name" in s.reason for s in result.skipped)


def test_real_data_matches_the_frozen_manifest_exactly():
    parts = split.apply_manifest(labels.scan(archives()).records, split.read_manifest())
    assert not parts.unlisted and not parts.missing
    assert {k: len(v) for k, v in parts.by_split.items()} == {"train": 17755, "val": 2226, "test": 2224}
    for part in split.SPLITS:
        ages = np.array([r.age for r in parts.by_split[part]])
        assert 32.5 < ages.mean() < 34.0  # stratified: every split has the same age mix


def test_one_real_archive_caches_every_readable_chip_at_the_asked_size(tmp_path):
    summary = cache.build(archives()[:1], size=32, root=tmp_path, progress=False)
    assert sum(summary.sizes.values()) == 5552 - sum(1 for s in summary.skipped)
    assert not [s for s in summary.skipped if "unreadable" in s.reason]
    test = cache.load_split("test", 32, tmp_path)
    assert test.images.shape[1:] == (32, 32, 3) and 5 < test.images.mean() < 250
