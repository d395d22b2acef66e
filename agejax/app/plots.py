"""The demo's plots: one face's age distribution, and the ages a batch found."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VIEW_NAMES = ("photo as taken", "mirror image")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: nothing global, safe across request threads

    figure = Figure(figsize=(width, height), layout="tight")
    return figure, figure.add_subplot()


def face_distribution(face: dict) -> Figure:
    """A face's predicted age distribution, with its mean and 90 % interval marked.

    ``face`` is one entry of the Estimate tab's faces JSON (render.faces_json).
    """
    figure, axis = _figure(7, 3.4)
    views = np.asarray(face["views"], np.float64)
    ages = np.arange(views.shape[1])
    if face.get("low90") is not None:
        axis.axvspan(face["low90"], face["high90"], color="#ffc400", alpha=0.25,
                     label=f"90 % interval {face['low90']:.0f}-{face['high90']:.0f}")
    if len(views) > 1:
        for view, name, style in zip(views, VIEW_NAMES, (":", "--")):
            axis.plot(ages, view, style, linewidth=1.2, label=name)
    axis.plot(ages, views.mean(axis=0), color="black", linewidth=2,
              label="the estimate" + (" (both views)" if len(views) > 1 else ""))
    axis.axvline(face["age"], color="#d62728", linewidth=1.5, label=f"mean {face['age']:.1f} years")
    top = max(face.get("high90") or face["age"], face["age"]) + 15
    axis.set(xlim=(0, min(len(ages) - 1, max(60, top))), ylim=(0, None), xlabel="age (years)",
             ylabel="probability", title=f"face {face['face']}: predicted age distribution")
    axis.legend(fontsize=8, loc="best", framealpha=0.9)
    return figure


def batch_ages(ages: list[float], share_under18: float | None) -> Figure:
    """A histogram of a batch's ages, its title giving the share estimated under 18."""
    figure, axis = _figure(7, 3)
    ages = np.asarray(ages, np.float64)
    axis.hist(ages, bins=np.arange(0, max(90, ages.max(initial=0) + 5) + 5, 5), color="#1f77b4", edgecolor="white")
    under = "" if share_under18 is None else f"; {100 * share_under18:.0f} % estimated under 18"
    axis.set(xlabel="estimated age (years, 5-year bins)", ylabel="faces", title=f"{len(ages)} faces{under}")
    return figure
