import json
import math

import numpy as np
import pytest

from agejax.cli import evaluate as evaluate_script
from agejax.data import cache, split
from agejax.evaluation import conformal, metrics
from agejax.training.configs import TrainConfig

from conftest import jpeg_bytes, save_tiny_checkpoint, save_tiny_run


def test_overall_metrics_match_hand_computed_values():
    overall = metrics.overall_metrics(np.array([10, 20, 30, 40]), np.array([12, 20, 25, 50]))
    # errors: +2, 0, -5, +10
    assert overall == pytest.approx({
        "count": 4, "mae": 4.25, "mse": 32.25, "rmse": math.sqrt(32.25), "cs5": 0.75, "cs10": 1.0, "bias": 1.75,
    })


def test_decade_bins_at_their_edges():
    ages = np.array([0, 9, 9.99, 10, 89, 90, 116, -3])
    assert metrics.decade_of(ages).tolist() == [0, 0, 0, 1, 8, 9, 9, 0]
    assert metrics.DECADES[0] == "0-9" and metrics.DECADES[8] == "80-89" and metrics.DECADES[9] == "90+"


def test_decade_confusion_counts_and_row_shares():
    true = np.array([9, 10, 89, 90, 116, 116])
    predicted = np.array([10, 9, 90, 89, 116, 95])
    confusion = metrics.decade_confusion(true, predicted)
    counts = np.array(confusion["counts"])
    assert counts.sum() == 6 and counts.shape == (10, 10)
    assert counts[0, 1] == 1 and counts[1, 0] == 1 and counts[8, 9] == 1 and counts[9, 8] == 1 and counts[9, 9] == 2
    shares = np.array(confusion["row_normalised"])
    assert shares[9].tolist()[8:] == [pytest.approx(1 / 3, abs=1e-4), pytest.approx(2 / 3, abs=1e-4)]
    assert shares[5].sum() == 0  # an empty decade has no shares, not NaN


def test_grouped_metrics_per_group_and_empty_groups():
    rows = metrics.grouped_metrics(np.array([20, 30, 40]), np.array([25, 30, 30]), np.array([0, 0, 1]), ("a", "b", "c"))
    assert rows[0] == {"group": "a", "count": 2, "mae": 2.5, "bias": 2.5}
    assert rows[1] == {"group": "b", "count": 1, "mae": 10.0, "bias": -10.0}
    assert rows[2] == {"group": "c", "count": 0, "mae": None, "bias": None}


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 10)  # n = 9
    assert conformal.conformal_quantile(scores, 0.8) == 8  # ceil(10 * 0.8) = 8th smallest
    assert conformal.conformal_quantile(scores, 0.9) == 9
    assert conformal.conformal_quantile(np.arange(3), 0.9) == math.inf


@pytest.mark.parametrize("with_std", [True, False])
def test_conformal_intervals_reach_their_coverage_on_synthetic_data(with_std):
    rng = np.random.default_rng(0)

    def sample(n):
        true = rng.uniform(0, 100, n)
        std = rng.uniform(1, 8, n)  # heteroscedastic noise, known to the "model"
        return true, true + rng.normal(0, std), std if with_std else None

    result = metrics.conformal_report(sample(3000), sample(20000))
    for level in ("80", "90"):
        # Sampling error of the calibration quantile and the test share: well under 0.02.
        assert result["levels"][level]["coverage"] == pytest.approx(int(level) / 100, abs=0.02)
    if with_std:  # scaled by the std, 90 % intervals are about 2 x 1.645 std wide
        assert result["levels"]["90"]["mean_width"] == pytest.approx(2 * 1.645 * 4.5, rel=0.1)


def test_full_report_has_a_stable_schema():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 100, 200)
    predicted = true + rng.normal(0, 5, 200)
    report = metrics.full_report(true, predicted, np.full(200, 5.0), rng.integers(0, 2, 200),
                                  rng.integers(0, 5, 200), calibration=(true, predicted, np.full(200, 5.0)))
    assert list(report) == ["overall", "per_decade", "per_gender", "per_race", "decade_confusion", "conformal"]
    assert list(report["overall"]) == ["count", "mae", "mse", "rmse", "cs5", "cs10", "bias"]
    assert [r["group"] for r in report["per_gender"]] == ["male", "female"]
    assert len(report["per_race"]) == 5 and len(report["per_decade"]) == 10
    assert set(report["conformal"]["levels"]) == {"80", "90"}
    json.dumps(report)  # serialisable as it is


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path / "ckpt")


def test_evaluate_script_on_a_folder_with_a_csv_reports_bad_rows_and_goes_on(tmp_path, tiny_checkpoint, capsys):

    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(4):
        (faces / f"f{i}.jpg").write_bytes(jpeg_bytes(i))
    (faces / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "labels.csv").write_text(
        "path,age\nf0.jpg,20\nf1.jpg,35\nf2.jpg,50\nf3.jpg,61\nbroken.jpg,30\nmissing.jpg,40\nf0.jpg,old\n"
    )
    out = tmp_path / "report"
    code = evaluate_script.main(["--model", str(tiny_checkpoint), "--folder", str(faces), "--labels",
                                 str(tmp_path / "labels.csv"), "--out", str(out), "--cache-root", str(tmp_path / "none")])
    assert code == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["overall"]["count"] == 4
    reasons = sorted(s["reason"] for s in written["skipped"])
    assert reasons == ["age 'old' is not a number in 0-116", "file not found", "unreadable image (UnidentifiedImageError)"]
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png", "errors.png", "mae_per_decade.png", "metrics.json", "report.md", "scatter.png"]
    assert "MAE" in (out / "report.md").read_text()
    assert "skipped 3 files" in capsys.readouterr().err


def test_compare_writes_one_table_and_one_figure_for_all_models(tmp_path, tiny_checkpoint, monkeypatch):

    regression = save_tiny_checkpoint(tmp_path / "regression", head="regression")
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, age in enumerate((3, 15, 27, 44, 71, 95)):
        (faces / f"{age}_{i % 2}_{i % 5}_2017010{i}.jpg.chip.jpg").write_bytes(jpeg_bytes(i))
    out = tmp_path / "compare"
    code = evaluate_script.main(["--compare", str(tiny_checkpoint), str(regression), "--folder", str(faces),
                                 "--out", str(out), "--cache-root", str(tmp_path / "none")])
    assert code == 0
    table = json.loads((out / "comparison.json").read_text())["models"]
    assert set(table) == {str(tiny_checkpoint), str(regression)} and all(row["count"] == 6 for row in table.values())
    # Neither checkpoint was exported with the test-time flip; compared, both score mirrored faces too.
    assert all(row["test_time_flip"] for row in table.values())
    assert (out / "mae_per_decade.png").stat().st_size > 0
    text = (out / "comparison.md").read_text()
    assert f"| {tiny_checkpoint} |" in text and f"| {regression} |" in text
    assert "Every model scored each face and its mirror image." in text
    assert "| model | 0-9 | 10-19 |" in text and text.count("(+") + text.count("(-") >= 12  # each model's six decades
    # Two checkpoints of one name, e.g. the shipped model and a candidate, keep a row each; a model
    # in the home directory is named from ~, as the quoted command names it.
    namesake = save_tiny_checkpoint(tmp_path / "other" / "ckpt")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert evaluate_script.main(["--compare", str(tiny_checkpoint), str(namesake), "--folder", str(faces),
                                 "--out", str(tmp_path / "namesakes"), "--cache-root", str(tmp_path / "none")]) == 0
    written = json.loads((tmp_path / "namesakes" / "comparison.json").read_text())
    assert set(written["models"]) == {"~/ckpt", "~/other/ckpt"} and "~/other/ckpt" in written["command"]


def test_evaluate_script_reads_another_sources_split_and_calibrates_on_its_validation(tmp_path, tiny_checkpoint):
    rng = np.random.default_rng(2)

    def part(n, age):
        return cache.SplitArrays(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.full(n, age, np.int32),
                                 np.zeros(n, np.int8), np.full(n, -1, np.int8), np.array([f"{i}.jpg" for i in range(n)]))

    root = tmp_path / "cache"
    cache.write({"train": part(4, 30), "val": part(6, 30), "test": part(5, 30)}, 32, root)
    cache.write({"train": part(4, 70), "val": part(8, 70), "test": part(7, 70)}, 32, root, split.PACKAGED / "aaf.csv")
    out = tmp_path / "report"
    assert evaluate_script.main(["--model", str(tiny_checkpoint), "--source", "aaf", "--out", str(out),
                                 "--cache-root", str(root)]) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["overall"]["count"] == 7
    # The untrained model answers near 58 for every face: 12 years under All-Age-Faces' 70, not 28 over UTKFace's 30.
    assert written["overall"]["bias"] < 0 and written["overall"]["mae"] == pytest.approx(-written["overall"]["bias"])
    # Calibrated on this source's validation (errors of 12 years), not UTKFace's (28): about 24 years wide, not 56.
    assert written["conformal"]["levels"]["80"]["mean_width"] < 40


def test_a_reported_command_retyped_in_a_shell_gives_back_its_arguments(tmp_path, monkeypatch):
    import subprocess

    from agejax.cli import command_line

    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["--run-dir", str(tmp_path / "runs" / "a b's"), "--name", "cnn", str(tmp_path), "../shared/data/utkface/"]
    command = command_line("scripts/export_checkpoint.py", argv)
    assert str(tmp_path / "runs") not in command and "~/" in command
    words = command.split(" ", 2)[2]  # after "python scripts/export_checkpoint.py"
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {words}"], capture_output=True, text=True,
                            env={"HOME": str(tmp_path)}, check=True).stdout.splitlines()
    assert echoed == argv


def test_a_piped_evaluation_prints_no_progress_bar(tmp_path, capsys):
    # A training run scores through Keras, whose progress bar would fill a log with control codes.
    run = save_tiny_run(tmp_path / "run", TrainConfig(image_size=32, cnn_width=4))
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, age in enumerate((8, 30, 66)):
        (faces / f"{age}_0_0_2017010{i}.jpg.chip.jpg").write_bytes(jpeg_bytes(i))
    capsys.readouterr()
    assert evaluate_script.main(["--compare", str(run), "--folder", str(faces), "--out", str(tmp_path / "out"),
                                 "--cache-root", str(tmp_path / "none")]) == 0
    printed = capsys.readouterr()
    assert "comparison:" in printed.out
    assert "━" not in printed.out + printed.err and "\x1b[" not in printed.out + printed.err
