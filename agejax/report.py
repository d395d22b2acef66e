"""Plots: the training curves, drawn from a run's history.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


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
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
