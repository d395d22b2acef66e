"""Plots for training runs and evaluation reports, readable at a glance: axes in years, titled."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _finish(figure, out_png: Path) -> None:
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv rows, one per epoch; a resumed run's repeated epoch keeps its last row."""
    with open(path, newline="") as handle:
        rows = {int(row["epoch"]): {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)}
    return [rows[epoch] for epoch in sorted(rows)]


def plot_history(history_csv: Path, out_png: Path, title: str) -> None:
    rows = read_history(history_csv)
    if not rows:
        return
    epochs = [row["epoch"] + 1 for row in rows]
    figure, (loss_axis, mae_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        loss_axis.plot(epochs, [row.get(key, float("nan")) for row in rows], marker=".", label=label)
    for key, label in (("age_mae", "train (augmented)"), ("val_age_mae", "validation")):
        mae_axis.plot(epochs, [row.get(key, float("nan")) for row in rows], marker=".", label=label)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    mae_axis.set(xlabel="epoch", ylabel="MAE (years)", title="mean absolute error")
    for axis in (loss_axis, mae_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{title}: training curves")
    _finish(figure, out_png)


def plot_confusion(confusion: dict, out_png: Path, title: str) -> None:
    """Row-normalised decade confusion heatmap, each cell annotated with its share and count."""
    shares = np.asarray(confusion["row_normalised"])
    counts = np.asarray(confusion["counts"])
    labels = confusion["labels"]
    figure, axis = plt.subplots(figsize=(8, 7))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(labels)):
        for col in range(len(labels)):
            if counts[row, col]:
                colour = "white" if shares[row, col] > 0.5 else "black"
                axis.text(col, row, f"{shares[row, col]:.2f}\n({counts[row, col]})",
                          ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(len(labels)), labels, rotation=45)
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted age (years)", ylabel="true age (years)", title=f"{title}: decade confusion (row-normalised)")
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true decade")
    _finish(figure, out_png)


def plot_scatter(true: np.ndarray, predicted: np.ndarray, out_png: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6, 6))
    axis.scatter(true, predicted, s=4, alpha=0.3)
    top = max(float(np.max(true)), float(np.max(predicted)), 1.0)
    axis.plot([0, top], [0, top], color="black", linewidth=1, label="predicted = true")
    axis.set(xlabel="true age (years)", ylabel="predicted age (years)", title=f"{title}: true vs predicted")
    axis.legend()
    axis.grid(alpha=0.3)
    _finish(figure, out_png)


def plot_error_histogram(true: np.ndarray, predicted: np.ndarray, out_png: Path, title: str) -> None:
    error = np.asarray(predicted) - np.asarray(true)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(error, bins=np.arange(-40, 41, 2))
    axis.axvline(0, color="black", linewidth=1)
    axis.set(xlabel="predicted - true age (years)", ylabel="faces", title=f"{title}: signed error")
    axis.grid(alpha=0.3)
    _finish(figure, out_png)


def plot_mae_per_decade(per_model: dict[str, list[dict]], out_png: Path, title: str) -> None:
    """Bars of MAE per true decade, one colour per model, side by side."""
    names = list(per_model)
    decades = [row["group"] for row in per_model[names[0]]]
    width = 0.8 / len(names)
    figure, axis = plt.subplots(figsize=(9, 4))
    for i, name in enumerate(names):
        values = [row["mae"] if row["mae"] is not None else 0 for row in per_model[name]]
        positions = np.arange(len(decades)) + (i - (len(names) - 1) / 2) * width
        axis.bar(positions, values, width, label=name)
    axis.set_xticks(range(len(decades)), decades)
    axis.set(xlabel="true age (years)", ylabel="MAE (years)", title=f"{title}: MAE per decade")
    axis.legend()
    axis.grid(alpha=0.3, axis="y")
    _finish(figure, out_png)


def plot_reliability(reliability: dict, out_png: Path, title: str) -> None:
    """Calibrated p_under18 against the share of faces that are minors, per bin of p."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    points = [(p, o, n) for p, o, n in zip(reliability["mean_p"], reliability["share_minors"], reliability["counts"])
              if p is not None]
    if points:
        mean_p, observed, counts = zip(*points)
        axis.plot(mean_p, observed, marker="o", label=f"model (ECE {reliability['ece']:.3f})")
        for p, o, n in points:
            axis.annotate(str(n), (p, o), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability of being under 18",
             ylabel="share of these faces under 18", title=f"{title}: is the face under 18?")
    axis.legend(loc="upper left")
    _finish(figure, out_png)


def _minors_lines(minors: dict) -> list[str]:
    rows = []
    for label, key in (("0.5", "at_0.5"), ("chosen on validation", "at_validation_threshold")):
        r = minors[key]
        rows.append(f"| {label} ({r['threshold']:.3f}) | {_pct(r['false_adult'])} | {_pct(r['false_adult_13_17'])} "
                    f"| {_pct(r['false_minor'])} |")
    counts = minors["at_0.5"]
    return [
        "## Under 18? (calibrated p_under18)", "",
        f"Expected calibration error {minors['reliability']['ece']:.3f} over {counts['minors']} minors "
        f"({counts['aged_13_17']} aged 13-17) and {counts['adults']} adults. An estimate, not age verification.", "",
        "| threshold | minors called adults | of them aged 13-17 | adults called minors |", "|---|---|---|---|",
        *rows, "", "![reliability of p_under18](reliability.png)", "",
    ]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _years(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_evaluation(
    out_dir: Path, title: str, report: dict, true: np.ndarray, predicted: np.ndarray, curves_png: Path | None = None
) -> None:
    """metrics.json, the plots, and report.md embedding them, into out_dir."""
    import json
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    heading = f"{title}, {report['set']}"
    plot_confusion(report["decade_confusion"], out_dir / "confusion.png", heading)
    plot_scatter(true, predicted, out_dir / "scatter.png", heading)
    plot_error_histogram(true, predicted, out_dir / "errors.png", heading)
    plot_mae_per_decade({title: report["per_decade"]}, out_dir / "mae_per_decade.png", heading)
    if curves_png is not None and Path(curves_png).exists():
        shutil.copy(curves_png, out_dir / "curves.png")
    if report.get("p_under18"):
        plot_reliability(report["p_under18"]["reliability"], out_dir / "reliability.png", heading)

    overall = report["overall"]
    lines = [
        f"# {heading}",
        "",
        f"Made by `{report['command']}`.",
        "",
        "| faces | MAE | RMSE | bias (mean signed error) | CS@5 | CS@10 |",
        "|---|---|---|---|---|---|",
        f"| {overall['count']} | {overall['mae']:.2f} | {overall['rmse']:.2f} | {overall['bias']:+.2f} "
        f"| {_pct(overall['cs5'])} | {_pct(overall['cs10'])} |",
        "",
        "Errors in years. CS@k: share of faces within k years.",
        "",
    ]
    for key, label in (("per_decade", "true age"), ("per_gender", "gender"), ("per_race", "race")):
        if report.get(key):
            lines += [f"| {label} | faces | MAE | bias |", "|---|---|---|---|"]
            lines += [f"| {r['group']} | {r['count']} | {_years(r['mae'])} | {_years(r['bias'])} |" for r in report[key]]
            lines.append("")
    if report.get("conformal"):
        lines += ["## Prediction intervals (split-conformal, calibrated on the validation split)", "",
                  "| nominal | coverage measured here | mean width (years) |", "|---|---|---|"]
        levels = report["conformal"]["levels"]
        for level, row in levels.items():
            lines.append(f"| {level} % | {_pct(row['coverage'])} | {row['mean_width']:.1f} |")
        lines += ["", "Coverage per true decade:", "",
                  "| true age | faces | " + " | ".join(f"{level} % interval" for level in levels) + " |",
                  "|---|---|" + "---|" * len(levels)]
        for d, decade in enumerate(levels[next(iter(levels))]["per_decade"]):
            cells = " | ".join(_pct(levels[level]["per_decade"][d]["coverage"]) for level in levels)
            lines.append(f"| {decade['decade']} | {decade['count']} | {cells} |")
        lines.append("")
    if report.get("p_under18"):
        lines += _minors_lines(report["p_under18"])
    lines += ["![decade confusion](confusion.png)", "", "![MAE per decade](mae_per_decade.png)", "",
              "![true vs predicted](scatter.png)", "", "![signed error](errors.png)", ""]
    if (out_dir / "curves.png").exists():
        lines += ["![training curves](curves.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def write_comparison(out_dir: Path, results: dict[str, dict], command: str) -> None:
    """One table (comparison.md, comparison.json) and one figure with every model on the same set."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = {r["set"] for r in results.values()}
    table = {name: {"set": r["set"], "test_time_flip": r["test_time_flip"], **r["overall"], "per_decade": r["per_decade"]}
             for name, r in results.items()}
    (out_dir / "comparison.json").write_text(json.dumps({"command": command, "models": table}, indent=2) + "\n")
    plot_mae_per_decade(
        {name: r["per_decade"] for name, r in results.items()}, out_dir / "mae_per_decade.png", " vs ".join(results)
        + f", {', '.join(sorted(sets))}"
    )
    mirrored = all(r["test_time_flip"] for r in results.values())
    scored = "Every model scored each face and its mirror image. " if mirrored else ""
    lines = [f"# Model comparison, {', '.join(sorted(sets))}", "", f"{scored}Made by `{command}`.", "",
             "| model | faces | MAE | RMSE | bias | CS@5 | CS@10 |", "|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['count']} | {row['mae']:.2f} | {row['rmse']:.2f} | {row['bias']:+.2f} "
                     f"| {_pct(row['cs5'])} | {_pct(row['cs10'])} |")
    decades = [row["group"] for row in next(iter(results.values()))["per_decade"]]
    lines += ["", "MAE (bias) per decade of true age:", "", "| model | " + " | ".join(decades) + " |",
              "|---|" + "---|" * len(decades)]
    for name, result in results.items():
        cells = ["-" if row["mae"] is None else f"{row['mae']:.2f} ({row['bias']:+.2f})" for row in result["per_decade"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![MAE per decade](mae_per_decade.png)", ""]
    (out_dir / "comparison.md").write_text("\n".join(lines))
