"""scripts/batch_predict.py end to end: real files, real worker processes, a real (tiny) model."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from agejax import scoring
from agejax.batch import sink
from agejax.cli import batch_predict
from agejax.data import labels, split

from conftest import REPO, SHARED_UTKFACE, group_photo, requires_shared, save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny")


def smooth_image(width: int, height: int, seed: int) -> Image.Image:
    """A faceless gradient (random noise can fool a face detector now and then)."""
    ramp = np.linspace(0, 1, width)[np.newaxis, :, np.newaxis] * np.linspace(0.5, 1, height)[:, np.newaxis, np.newaxis]
    colour = np.array([(seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256])
    return Image.fromarray((ramp * colour).astype(np.uint8))


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def messy_folder(root):
    (root / "nested" / "deeper").mkdir(parents=True)
    smooth_image(40, 40, 1).save(root / "good.jpg")
    smooth_image(48, 32, 2).save(root / "nested" / "good.png")
    smooth_image(40, 40, 3).convert("CMYK").save(root / "cmyk.jpg")
    smooth_image(40, 40, 4).convert("L").save(root / "grey.jpg")
    smooth_image(40, 40, 5).convert("RGBA").save(root / "alpha.png")
    smooth_image(40, 40, 6).save(root / "nested" / "deeper" / "anim.gif", save_all=True,
                                 append_images=[smooth_image(40, 40, 7)])
    rotated = smooth_image(30, 20, 8)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "rotated.jpg", exif=exif)
    buffer = io.BytesIO()
    smooth_image(300, 200, 9).save(buffer, "JPEG")
    (root / "corrupt.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (root / "text.jpg").write_text("not a picture")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    smooth_image(40, 40, 10).save(root / ".hidden.jpg")
    os.symlink("loop.jpg", root / "loop.jpg")
    os.symlink("..", root / "nested" / "back")
    return root


DECODABLE = ["alpha.png", "cmyk.jpg", "good.jpg", "grey.jpg", "nested/deeper/anim.gif", "nested/good.png", "rotated.jpg"]


def test_every_file_gets_a_row_and_bad_files_a_reason(tmp_path, tiny_model, capsys):
    folder = messy_folder(tmp_path / "in")
    out = tmp_path / "ages.csv"
    assert batch_predict.main([str(folder), "-o", str(out), "--model", str(tiny_model), "-q"]) == 0
    rows = {row["path"]: row for row in read_rows(out)}
    assert sorted(rows) == sorted(DECODABLE + ["corrupt.jpg", "text.jpg", "empty.jpg", "loop.jpg", "nested/back"])
    assert rows["text.jpg"]["error"] == "not an image"
    assert rows["empty.jpg"]["error"] == "empty file"
    assert rows["corrupt.jpg"]["error"].startswith("corrupt image")
    assert rows["loop.jpg"]["error"].startswith("cannot read file")
    assert rows["nested/back"]["error"] == "symlink loop: directory already scanned"
    assert all(rows[path]["error"] == scoring.NO_FACE and rows[path]["age"] == "" for path in DECODABLE)
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("images 12, faces 0, errors 5, no face 7,") and "img/s" in summary

    whole = tmp_path / "whole.csv"
    assert batch_predict.main([str(folder), "-o", str(whole), "--model", str(tiny_model), "-q",
                               "--on-no-face", "whole"]) == 0
    rows = {row["path"]: row for row in read_rows(whole)}
    for path in DECODABLE:
        row = rows[path]
        assert (row["face"], row["crop"], row["error"]) == ("0", "whole", "")
        assert 0 <= float(row["age"]) <= 116 and float(row["std"]) > 0
        assert row["low90"] == row["high90"] == ""  # the tiny model has no calibrated intervals
    # Boxes are in upright pixels: the EXIF-rotated 30 x 20 file is 20 x 30.
    assert [rows["rotated.jpg"][k] for k in ("left", "top", "right", "bottom")] == ["0", "0", "20", "30"]
    assert [rows["nested/good.png"][k] for k in ("right", "bottom")] == ["48", "32"]


def test_usage_errors_and_an_unwritable_output_exit_non_zero(tmp_path, tiny_model, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    smooth_image(40, 40, 1).save(folder / "a.jpg")
    with pytest.raises(SystemExit) as exit_info:
        batch_predict.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        batch_predict.main([str(folder), "--shard", "4/4"])
    assert "need 0 <= I < N" in capsys.readouterr().err
    assert batch_predict.main([str(folder), "--model", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.csv")]) == 2
    assert batch_predict.main([str(folder), "--model", str(tiny_model), "-o", str(tmp_path)]) == 1  # a directory
    (tmp_path / "file").write_text("")
    assert batch_predict.main([str(folder), "--model", str(tiny_model), "-o", str(tmp_path / "file" / "x.csv")]) == 1
    existing = tmp_path / "done.csv"
    existing.write_text("precious\n")
    assert batch_predict.main([str(folder), "--model", str(tiny_model), "-o", str(existing), "-q"]) == 2
    assert existing.read_text() == "precious\n"  # never overwritten
    assert "--resume" in capsys.readouterr().err


def many_images(folder, count: int):
    folder.mkdir()
    for i in range(count):
        sub = folder / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        smooth_image(64, 48, i).save(sub / f"img{i:04d}.jpg", quality=90)
    return folder


def data_rows(path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(sink.COLUMNS)
    return lines[1:]


def test_resume_after_a_kill_loses_and_duplicates_nothing(tmp_path, tiny_model):
    folder = many_images(tmp_path / "in", 600)
    reference = tmp_path / "reference.csv"
    args = ["--model", str(tiny_model), "--on-no-face", "whole", "--batch-size", "8", "-q"]
    assert batch_predict.main([str(folder), "-o", str(reference), *args]) == 0

    killed = tmp_path / "killed.csv"
    command = [sys.executable, str(REPO / "scripts" / "batch_predict.py"), str(folder), "-o", str(killed), *args]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if killed.exists() and killed.read_text().count("\n") > 40:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = data_rows(killed)
    assert 40 <= len(partial) < 600
    # A kill in the middle of a write leaves half a line: make sure there is one.
    text = killed.read_bytes()
    killed.write_bytes(text[:-9])

    assert batch_predict.main([str(folder), "-o", str(killed), "--resume", *args]) == 0
    resumed = data_rows(killed)
    assert len(resumed) == len(set(resumed)) == 600
    assert resumed == data_rows(reference)  # same order, same values


FORMULA_NAMES = ['=HYPERLINK("x")+1.jpg', "+1.jpg", "-2.jpg", "@SUM(A1).jpg", "'quoted.jpg", "plain.jpg"]


def test_formula_file_names_are_spreadsheet_safe_and_resume_matches_them(tmp_path, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(FORMULA_NAMES):
        smooth_image(40, 40, i).save(folder / name, "JPEG")
    out = tmp_path / "ages.csv"
    args = ["--model", str(tiny_model), "--on-no-face", "whole", "-q", "--workers", "0"]
    assert batch_predict.main([str(folder), "-o", str(out), *args]) == 0
    cells = {row["path"] for row in read_rows(out)}
    assert cells == {"'" + name for name in FORMULA_NAMES[:-1]} | {"plain.jpg"}
    assert not any(cell.startswith(sink.FORMULA_STARTS) for row in read_rows(out) for cell in row.values())
    assert {sink.from_spreadsheet(cell) for cell in cells} == set(FORMULA_NAMES)

    # Resume knows every file is done, even the quoted ones, except the last (always rescored).
    rows_before = data_rows(out)
    assert batch_predict.main([str(folder), "-o", str(out), "--resume", *args]) == 0
    assert data_rows(out) == rows_before


def generated_photos(folder):
    """A tilted face upright HOG misses, a grey face, a small face in a large photo, and a photo of no one."""
    folder.mkdir()
    face = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB")
    tilted = Image.new("RGB", (448, 448), (120, 130, 140))
    tilted.paste(face.resize((260, 260)).rotate(45, fillcolor=(120, 130, 140)), (94, 94))
    tilted.save(folder / "tilted.jpg")
    face.convert("L").save(folder / "grey.jpg")
    small = smooth_image(1200, 900, 3)
    small.paste(face.resize((150, 150)), (700, 400))
    small.save(folder / "small.jpg")
    smooth_image(640, 480, 4).save(folder / "nobody.jpg")
    return folder


def test_the_detector_cascade_finds_what_hog_misses_and_says_which_found_it(tmp_path, tiny_model, capsys):
    folder = generated_photos(tmp_path / "in")
    found = {}
    for detector in ("hog", "auto"):
        out = tmp_path / f"{detector}.csv"
        args = [str(folder), "-o", str(out), "--model", str(tiny_model), "--detector", detector, "-q", "--workers", "0"]
        assert batch_predict.main(args) == 0
        found[detector] = {row["path"]: row for row in read_rows(out)}
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert found["hog"]["tilted.jpg"]["error"] == scoring.NO_FACE
    assert found["auto"]["tilted.jpg"]["detector"] == "cnn" and not found["auto"]["tilted.jpg"]["error"]
    for name in ("grey.jpg", "small.jpg"):  # HOG finds these, so the CNN never runs on them
        assert found["auto"][name]["detector"] == found["hog"][name]["detector"] == "hog"
    left, top, right, bottom = (int(found["auto"]["small.jpg"][k]) for k in ("left", "top", "right", "bottom"))
    assert 700 <= left < right <= 850 and 400 <= top < bottom <= 550
    assert found["auto"]["nobody.jpg"]["error"] == scoring.NO_FACE  # no false face from either detector
    assert "faces 3 (cnn 1, hog 2)" in summary


def test_shards_concatenate_to_the_single_run(tmp_path, tiny_model):
    folder = many_images(tmp_path / "in", 60)
    (folder / "bad.jpg").write_text("x")
    args = ["--model", str(tiny_model), "--on-no-face", "whole", "-q"]
    assert batch_predict.main([str(folder), "-o", str(tmp_path / "all.csv"), *args]) == 0
    shards = []
    for index in range(3):
        out = tmp_path / f"shard{index}.csv"
        assert batch_predict.main([str(folder), "-o", str(out), "--shard", f"{index}/3", *args]) == 0
        shards.append(data_rows(out))
    assert all(shards), "every shard got some files"
    assert sorted(sum(shards, [])) == sorted(data_rows(tmp_path / "all.csv"))


def test_resume_refuses_a_csv_of_another_model(tmp_path, tiny_model):
    folder = many_images(tmp_path / "in", 3)
    out = tmp_path / "ages.csv"
    out.write_text(",".join(sink.COLUMNS) + "\r\nimg.jpg,0,whole,,0,0,1,1,30.00,,,,,resnet50,\r\n")
    assert batch_predict.main([str(folder), "-o", str(out), "--model", str(tiny_model), "--resume", "-q"]) == 2


def test_every_face_of_a_real_group_photo_gets_a_row_with_its_box(tmp_path, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    photo, placed = group_photo()
    photo.save(folder / "group.jpg", quality=92)
    out = tmp_path / "ages.csv"
    assert batch_predict.main([str(folder), "-o", str(out), "--model", str(tiny_model), "-q"]) == 0
    rows = read_rows(out)
    assert [row["face"] for row in rows] == ["0", "1", "2"] and {row["crop"] for row in rows} == {"face"}
    boxes = [tuple(int(row[k]) for k in ("left", "top", "right", "bottom")) for row in rows]
    areas = [(right - left) * (bottom - top) for left, top, right, bottom in boxes]
    assert areas == sorted(areas, reverse=True)  # face 0 is the largest
    for (left, top, right, bottom), portrait in zip(boxes, placed):  # each box inside its own portrait
        assert portrait[0] <= left < right <= portrait[2] and portrait[1] <= top < bottom <= portrait[3]
    assert all(0 <= float(row["age"]) <= 116 for row in rows)


def test_labels_csv_gives_the_mae_and_a_report(tmp_path, tiny_model, capsys):
    folder = many_images(tmp_path / "in", 4)
    out = tmp_path / "ages.csv"
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("path,age\npart0/img0000.jpg,20\npart1/img0001.jpg,40\npart2/img0002.jpg,60\nmissing.jpg,5\n")
    assert batch_predict.main([str(folder), "-o", str(out), "--model", str(tiny_model), "--aligned",
                               "--labels", str(labels_csv), "-q"]) == 0
    predicted = {row["path"]: float(row["age"]) for row in read_rows(out)}
    expected = np.mean([abs(predicted["part0/img0000.jpg"] - 20), abs(predicted["part1/img0001.jpg"] - 40),
                        abs(predicted["part2/img0002.jpg"] - 60)])
    metrics = json.loads((tmp_path / "ages_report" / "metrics.json").read_text())
    assert metrics["overall"]["count"] == 3 and metrics["overall"]["mae"] == pytest.approx(expected, abs=1e-9)
    assert (tmp_path / "ages_report" / "confusion.png").exists()
    err = capsys.readouterr().err
    assert f"labelled faces 3: MAE {expected:.2f} years" in err
    assert "1 labelled paths have no scored face" in err and err.rstrip().count("missing.jpg") == 1


def test_a_bad_labels_file_stops_before_scoring_and_an_unwritable_report_keeps_the_csv(tmp_path, tiny_model, capsys):
    folder = many_images(tmp_path / "in", 3)
    args = ["--model", str(tiny_model), "--aligned", "-q"]
    binary, no_age_column = tmp_path / "binary.csv", tmp_path / "header.csv"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not text")
    no_age_column.write_text("file,years\npart0/img0000.jpg,20\n")
    for bad in (binary, no_age_column):
        out = tmp_path / f"{bad.stem}_ages.csv"
        assert batch_predict.main([str(folder), "-o", str(out), "--labels", str(bad), *args]) == 2
        assert not out.exists()  # refused before any scoring
    err = capsys.readouterr().err
    assert "binary.csv is not a UTF-8 CSV" in err and "header.csv needs a header with the columns path,age" in err

    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("path,age\npart0/img0000.jpg,20\n")
    out = tmp_path / "ages.csv"
    (tmp_path / "ages_report").write_text("a file where the report's folder would go")
    assert batch_predict.main([str(folder), "-o", str(out), "--labels", str(labels_csv), *args]) == 1
    assert len(data_rows(out)) == 3  # every scored row kept
    assert f"cannot write the report in {tmp_path / 'ages_report'}" in capsys.readouterr().err


@requires_shared
def test_aligned_utkface_test_split_reaches_the_reported_mae(tmp_path, capsys):
    scan = labels.scan(sorted(SHARED_UTKFACE.glob("*.tar.gz")))
    test_records = split.apply_manifest(scan.records, split.read_manifest()).by_split["test"]
    assert labels.export_files(test_records, tmp_path / "test") == 2224
    out = tmp_path / "test.csv"
    assert batch_predict.main([str(tmp_path / "test"), "-o", str(out), "--aligned", "-q"]) == 0
    metrics = json.loads((tmp_path / "test_report" / "metrics.json").read_text())
    reported = json.loads((REPO / "checkpoints" / "cnn" / "metrics.json").read_text())["test_mae"]
    assert metrics["overall"]["count"] == 2224
    assert metrics["overall"]["mae"] == pytest.approx(reported, abs=0.1)
    rows = read_rows(out)
    assert all(0 <= float(r["low90"]) <= float(r["age"]) <= float(r["high90"]) <= 116 for r in rows)
    covered = np.mean([float(r["low90"]) <= labels.parse_name(r["path"]).age <= float(r["high90"]) for r in rows])
    assert 0.87 <= covered <= 0.93  # the 90 % interval, calibrated on validation, holds on test


def test_scoring_unlabelled_crops_imports_no_keras_jax_report_or_demo_libraries(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "face.jpg").write_bytes((REPO / "examples" / "utkface_31.jpg").read_bytes())
    script = (
        "import sys; from agejax.cli.batch_predict import main; "
        f"code = main([{str(folder)!r}, '--aligned', '-q', '--workers', '0', '-o', {str(tmp_path / 'ages.csv')!r}]); "
        "print(code, [name for name in ('keras', 'jax', 'sklearn', 'matplotlib', 'gradio') if name in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert len(read_rows(tmp_path / "ages.csv")) == 1
