import tarfile

import pytest

from agejax.data import labels

from conftest import MALFORMED, write_archive, write_images


@pytest.mark.parametrize(
    "name, expected",
    [
        ("26_1_2_20170116174525125.jpg.chip.jpg", (26, 1, 2)),
        ("0_0_4_20161221193014428.jpg.chip.jpg", (0, 0, 4)),
        ("116_1_0_20170120134921760.jpg.chip.jpg", (116, 1, 0)),
        # Two quirks of the official release: labels intact, datetime field odd.
        ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1)),
        ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),
        # The in-the-wild set's naming.
        ("30_1_3_20170104.jpg", (30, 1, 3)),
        ("subdir/9_0_2_20170104.jpg.chip.jpg", (9, 0, 2)),
    ],
)
def test_parse_name_reads_labels(name, expected):
    assert labels.parse_name(name) == labels.Labels(*expected)


@pytest.mark.parametrize(
    "name, reason",
    [
        (MALFORMED[0], "found 3"),
        ("26_1_2_3_4.jpg.chip.jpg", "found 5"),
        ("x_1_2_20170116.jpg.chip.jpg", "not a non-negative integer"),
        ("-3_1_2_20170116.jpg.chip.jpg", "not a non-negative integer"),
        ("117_1_2_20170116.jpg.chip.jpg", "above 116"),
        ("26_2_2_20170116.jpg.chip.jpg", "gender 2"),
        ("26_1_5_20170116.jpg.chip.jpg", "race 5"),
        ("26_1_2_20170116.txt", "not an image name"),
        ("", "not an image name"),
    ],
)
def test_parse_name_rejects_malformed(name, reason):
    with pytest.raises(labels.MalformedName, match=reason):
        labels.parse_name(name)


def test_scan_folder_skips_malformed_and_reports_once(utk_folder):
    result = labels.scan([utk_folder])
    assert len(result.records) == 18
    assert sorted(s.file_name for s in result.skipped) == sorted(MALFORMED)
    report = result.report()
    assert "read 21 files: 18 labelled images, 3 skipped" in report
    assert report.count("found 3") == 1 and all(name in report for name in MALFORMED)
    record = next(r for r in result.records if r.file_name.startswith("100_0_0"))
    assert (record.age, record.gender, record.race) == (100, 0, 0)


def test_scan_tar_gz_and_several_archives_in_any_mix(tmp_path, manifest_names):
    names = manifest_names["train"]
    part_a = write_archive(tmp_path / "a.tar.gz", write_images(tmp_path / "a", names[:3]))
    part_b = write_archive(tmp_path / "b.tgz", write_images(tmp_path / "b", names[3:5]))
    folder = write_images(tmp_path / "c", names[5:])
    result = labels.scan([part_a, part_b, folder])
    assert sorted(r.file_name for r in result.records) == sorted(names)
    assert not result.skipped
    assert {r.member for r in result.records if r.source == str(part_a)} == {f"UTKFace/{n}" for n in names[:3]}


def test_duplicate_names_across_sources_are_reported_and_first_kept(tmp_path, manifest_names):
    names = manifest_names["val"][:2]
    first = write_archive(tmp_path / "first.tar.gz", write_images(tmp_path / "x", names))
    second = write_images(tmp_path / "y", names[:1])
    result = labels.scan([first, second])
    assert len(result.records) == 2 and all(r.source == str(first) for r in result.records)
    assert [s.file_name for s in result.skipped] == names[:1]
    assert "duplicate name" in result.skipped[0].reason


def test_non_image_files_are_skipped_not_fatal(tmp_path, manifest_names):
    folder = write_images(tmp_path / "f", manifest_names["test"][:1])
    (folder / "README.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\0")
    result = labels.scan([folder])
    assert len(result.records) == 1
    assert {s.reason for s in result.skipped} == {"not an image file name"}


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor"):
        labels.scan([tmp_path / "nope.tar.gz"])
    with pytest.raises(ValueError, match="no source"):
        labels.scan([])


def test_iter_image_bytes_reads_folders_and_archives(tmp_path, manifest_names):
    names = manifest_names["train"][:4]
    archive = write_archive(tmp_path / "a.tar.gz", write_images(tmp_path / "a", names[:2]))
    folder = write_images(tmp_path / "b", names[2:])
    records = labels.scan([archive, folder]).records
    got = dict((r.file_name, payload) for r, payload in labels.iter_image_bytes(records))
    assert set(got) == set(names)
    assert got[names[2]] == (folder / names[2]).read_bytes()
    with tarfile.open(archive) as tar:
        assert got[names[0]] == tar.extractfile(f"UTKFace/{names[0]}").read()


def test_iter_image_bytes_gives_none_for_a_vanished_file(tmp_path, manifest_names):
    folder = write_images(tmp_path / "a", manifest_names["train"][:2])
    records = labels.scan([folder]).records
    (folder / records[0].member).unlink()
    got = {r.file_name: payload for r, payload in labels.iter_image_bytes(records)}
    assert got[records[0].file_name] is None
    assert got[records[1].file_name] == (folder / records[1].member).read_bytes()
