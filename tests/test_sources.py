"""Labelled sources beyond UTKFace: CSV folders, All-Age-Faces names, loose crops aligned once,
near-duplicates dropped, and each source's frozen split."""

from __future__ import annotations

import collections
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from agejax.data import cache, chips, dedupe, prepare, sources, split

from conftest import REPO, SHARED_UTKFACE, group_photo, jpeg_bytes

SHARED_AAF = SHARED_UTKFACE.parent / "aaf"
PORTRAIT = REPO / "examples" / "grace_hopper.jpg"


def portrait_bytes(size: int = 224) -> bytes:
    """A loose crop of one real face, about the size of an All-Age-Faces file."""
    image = Image.open(PORTRAIT).convert("RGB")
    image = image.crop((60, 20, 460, 420)).resize((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_source_names_and_kinds():
    assert sources.parse_source("../data/utk").kind == "utkface"  # a bare path is UTKFace, as before
    assert sources.parse_source("aaf=/x").kind == "aaf"
    mine = sources.parse_source("Mine=/x/labels.csv")
    assert (mine.name, mine.kind, mine.aligned) == ("mine", "csv", False)
    with pytest.raises(ValueError, match="source name"):
        sources.parse_source("my photos=/x")


def test_aaf_names_carry_age_and_gender():
    assert sources.parse_aaf_name("00000A02.jpg") == (2, 1)  # serials below 07381 are women
    assert sources.parse_aaf_name("AAF/07381A35.jpg") == (35, 0)
    with pytest.raises(ValueError, match="NNNNNAyy"):
        sources.parse_aaf_name("0001A02.jpg")


def test_aaf_archive_is_read_and_bad_names_reported(tmp_path):
    archive = tmp_path / "AAF-1of1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in (("00010A05.jpg", jpeg_bytes(1)), ("08000A61.jpg", jpeg_bytes(2)), ("readme.jpg", b"x")):
            info = tarfile.TarInfo(f"AAF/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    scan = sources.scan(sources.parse_source(f"aaf={tmp_path}"))
    assert [(r.file_name, r.age, r.gender) for r in scan.records] == [("00010A05.jpg", 5, 1), ("08000A61.jpg", 61, 0)]
    assert [(s.file_name, s.reason.split(" (")[0]) for s in scan.skipped] == [("readme.jpg", "malformed name")]


def test_csv_source_reports_every_bad_row(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes(len(name)))
    (tmp_path / "labels.csv").write_text(
        "path,age,gender\n"
        "a.jpg,31,female\n"
        "b.jpg,7,m\n"
        "missing.jpg,20,\n"
        "c.jpg,130,f\n"
        "d.jpg,twenty,f\n"
        "a.jpg,31,female\n"
        ",5,\n"
        "b.jpg,7,m,extra\n"
    )
    scan = sources.scan(sources.parse_source(f"mine={tmp_path}"))
    assert [(r.file_name, r.age, r.gender) for r in scan.records] == [("a.jpg", 31, 1), ("b.jpg", 7, 0)]
    reasons = {s.file_name: s.reason for s in scan.skipped}
    assert reasons["missing.jpg"] == "file not found"
    assert "not a whole number in 0-116" in reasons["c.jpg"]
    assert "'twenty'" in reasons["d.jpg"]
    assert reasons["a.jpg"] == "listed twice"
    assert reasons["labels.csv line 8"] == "empty path"
    assert reasons["labels.csv line 9"] == "more fields than the header"


def test_csv_source_that_is_not_text_is_refused_with_its_name(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a CSV")
    with pytest.raises(ValueError, match="labels.csv is not a UTF-8 CSV"):
        sources.scan(sources.parse_source(f"mine={tmp_path / 'labels.csv'}"))


def test_csv_source_without_its_columns_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("file,years\na.jpg,3\n")
    with pytest.raises(ValueError, match="path,age"):
        sources.scan(sources.parse_source(f"mine={tmp_path / 'labels.csv'}"))


def test_loose_crops_give_one_chip_or_a_reason():
    chip, reason = chips.one_face(portrait_bytes())
    assert reason == "" and chip.shape == (200, 200, 3)
    blank = io.BytesIO()
    Image.new("RGB", (224, 224), (120, 120, 120)).save(blank, "JPEG")
    assert chips.one_face(blank.getvalue()) == (None, chips.NO_FACE)
    group = io.BytesIO()
    canvas, _ = group_photo()
    # Two faces of about the same size: whose age is the label?
    two = Image.new("RGB", (800, 400), (190, 190, 190))
    two.paste(canvas.crop((330, 20, 842, 620)).resize((340, 400)), (20, 0))
    two.paste(canvas.crop((330, 20, 842, 620)).resize((300, 352)), (450, 30))
    two.save(group, "JPEG")
    assert chips.one_face(group.getvalue()) == (None, "several faces (2)")
    assert chips.one_face(b"not an image")[1].startswith("unreadable image")


def test_aligned_chips_are_stored_and_reused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "one.jpg").write_bytes(portrait_bytes())
    (folder / "none.jpg").write_bytes(jpeg_bytes(3, size=120))
    (folder / "labels.csv").write_text("path,age\none.jpg,80\nnone.jpg,9\n")
    spec = sources.parse_source(f"mine={folder}")
    first = prepare.read_faces(spec, tmp_path / "cache", workers=1, progress=False)
    assert [r.file_name for r in first.records] == ["one.jpg"]
    assert [(s.file_name, s.reason) for s in first.rejected] == [("none.jpg", chips.NO_FACE)]
    (folder / "one.jpg").write_bytes(b"")  # the store is read, not the files again
    again = prepare.read_faces(spec, tmp_path / "cache", workers=1, progress=False)
    assert np.array_equal(again.chips, first.chips)


def test_near_duplicates_are_found_and_distinct_faces_kept():
    chip, _ = chips.one_face(portrait_bytes())
    copy = io.BytesIO()
    Image.fromarray(chip).resize((150, 150)).save(copy, "JPEG", quality=60)  # resized and recompressed
    recompressed = np.asarray(Image.open(copy).convert("RGB").resize((200, 200)))
    other, _ = chips.one_face(portrait_bytes(300))  # the same photo at another size, aligned again
    different = np.asarray(Image.open(REPO / "examples" / "utkface_72.jpg").convert("RGB"))
    hashes = dedupe.phash(np.stack([chip, recompressed, other, different]))
    found = dedupe.drop_within(hashes)
    assert {(d.dropped, d.kept) for d in found} == {(1, 0), (2, 0)}
    assert dedupe.overlap(hashes[3:], hashes[:3]) == []
    assert [(d.dropped, d.kept) for d in dedupe.overlap(hashes[1:2], hashes[[3, 0]])] == [(0, 1)]


def test_a_user_source_is_split_once_and_the_split_reused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    rows = ["path,age"]
    image = Image.open(PORTRAIT).convert("RGB")
    for i in range(12):  # the same face, each a different crop: distinct files, one person
        crop = image.crop((40 + 4 * i, 10 + 3 * i, 480 - 2 * i, 450 - i)).resize((224, 224))
        crop.save(folder / f"f{i}.jpg", quality=90)
        rows.append(f"f{i}.jpg,{20 + i}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    root = tmp_path / "cache"
    faces = prepare.read_faces(sources.parse_source(f"mine={folder}"), root, workers=1, progress=False)
    prepare.prepare(faces, 32, root)
    manifest = split.manifest_path("mine", root)
    first = manifest.read_bytes()
    with pytest.raises(FileExistsError):
        prepare.make_manifest(faces, path=manifest)
    prepare.prepare(faces, 24, root)
    assert manifest.read_bytes() == first
    sizes = {part: len(cache.load_split(part, 24, root, source="mine")) for part in split.SPLITS}
    dropped = split.read_dropped(manifest)
    assert sum(sizes.values()) + len(dropped) == 12
    assert all("near-duplicate" in reason for reason in dropped.values())
    # A file already listed as rejected is counted in the manifest's report, not listed again.
    spec, listed = sources.parse_source(f"mine={folder}"), sorted(dropped)[0]
    assert listed in prepare.dropped_report(spec, root)
    again = prepare.dropped_report(spec, root, reported={listed})
    assert f"drops {len(dropped)} files, 1 of them listed above" in again and listed not in again


def test_committed_aaf_manifest_is_frozen():
    path = split.PACKAGED / "aaf.csv"
    counts = collections.Counter(split.read_manifest(path).values())
    assert counts == {"train": 9174, "val": 1151, "test": 1151}
    dropped = split.read_dropped(path)
    assert len(dropped) == 346 and all(dropped.values())
    # Changing the manifest changes every number we report: it must not change silently.
    assert split.manifest_hash(path) == "539c232ebb1ed1b2b894dde12ee533d3d386243e8b52656cdd84619da385de77"


@pytest.mark.skipif(not any(SHARED_AAF.glob("*.tar.gz")), reason=f"All-Age-Faces archives not found in {SHARED_AAF}")
def test_shared_aaf_files_match_their_manifest():
    scan = sources.scan(sources.parse_source(f"aaf={SHARED_AAF}"))
    names = {r.file_name for r in scan.records}
    listed = set(split.read_manifest(split.PACKAGED / "aaf.csv")) | set(split.read_dropped(split.PACKAGED / "aaf.csv"))
    assert names == listed


def test_a_loose_crop_with_a_second_face_half_as_wide_is_rejected_though_the_coarse_pass_misses_it():
    """Preparation looks for every face at full size: HOG's coarse first pass, which serving
    uses, stops at the large face and would have let the file through."""
    face = Image.open(PORTRAIT).convert("RGB")
    canvas = Image.new("RGB", (1000, 800), (150, 140, 130))
    canvas.paste(face.resize((560, 656)), (20, 20))
    canvas.paste(face.resize((300, 351)), (650, 400))
    payload = io.BytesIO()
    canvas.save(payload, "JPEG", quality=92)
    from agejax.faces import cascade

    assert len(cascade.FaceAligner().faces(np.asarray(canvas))) == 1
    chip, reason = chips.one_face(payload.getvalue())
    assert chip is None and reason == "several faces (2)"
