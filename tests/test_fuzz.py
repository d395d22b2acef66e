"""Hostile files through the batch CLI: every file gets its rows, nothing crashes, -q stays quiet."""

from __future__ import annotations

import collections
import csv
import math

import pytest

from agejax.batch import sink
from agejax.cli import batch_predict

from conftest import save_tiny_checkpoint
from fuzz_images import write_fuzz_folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny")


def test_every_fuzzed_file_gets_one_row_or_one_per_face(tmp_path, tiny_model, capfd):
    folder = tmp_path / "fuzz"
    written = write_fuzz_folder(folder, 300, seed=0)
    assert len(set(written.values())) >= 8  # every kind of damage is in the sample
    out = tmp_path / "fuzz.csv"
    args = [str(folder), "-o", str(out), "--model", str(tiny_model), "--on-no-face", "whole", "-q"]
    assert batch_predict.main(args) == 0

    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_file = collections.defaultdict(list)
    for row in rows:
        by_file[sink.from_spreadsheet(row["path"])].append(row)
    assert set(by_file) == set(written)  # no file lost, none invented
    for name, file_rows in by_file.items():
        if file_rows[0]["error"]:
            assert len(file_rows) == 1 and file_rows[0]["age"] == "", name
        else:
            assert [int(row["face"]) for row in file_rows] == list(range(len(file_rows))), name
            assert all(math.isfinite(float(row["age"])) and not row["error"] for row in file_rows), name
    intact = [name for name, kind in written.items() if kind in ("intact", "exif")]
    assert intact and all(not by_file[name][0]["error"] for name in intact)

    # Under -q, stderr holds the closing summary and nothing else (no Pillow warnings).
    stderr = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(stderr) == 1 and stderr[0].startswith("images 300, "), stderr
