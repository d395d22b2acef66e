"""The model card (checkpoints/<name>/README.md), written from the export's metrics.json."""

from __future__ import annotations

SOURCE_LABELS = {"utkface": "UTKFace", "aaf": "All-Age-Faces"}


def int8_line(shipped: dict) -> str:
    graph = shipped.get("int8_graph")
    if not graph:
        return "Serves on its float32 graph (`forward.onnx`); no int8 graph was tried."
    if not graph["kept"]:
        return f"Serves on its float32 graph (`forward.onnx`); the int8 graph was not kept: {graph['why']}."
    worst = max(graph["mae_shift_over_float32"].values(), key=abs)
    return (f"Serves on its int8 graph (`forward.int8.onnx`): {graph['speedup']:.2f}x the float32 graph's speed per "
            f"face in the export's measurement, moving validation and test MAE by at most {abs(worst):.3f} years; "
            "`forward.onnx` (float32) is the fallback.")


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def origin(config: dict) -> str:
    """How a trained model came to be, from its config: from scratch, fine-tuned, distilled."""
    how = (f"fine-tuned from an earlier agejax model (`init_weights`: `{config['init_weights']}`; that chain "
           "began from random initialisation)" if config.get("init_weights") else "trained from random initialisation")
    if config.get("teachers"):
        teachers = ", ".join(f"`{t}`" for t in config["teachers"])
        how += (f" and distilled from {teachers} (their mean age distribution made {config['teacher_weight']:.0%} "
                "of each training face's target, its label the rest)")
    return how


def how_made(shipped: dict) -> str:
    """The card's opening: what the model is, what it learnt from and the commands that made it."""
    config = shipped["config"]
    trained_on = " and ".join(SOURCE_LABELS.get(s, s) for s in config.get("sources", ["utkface"]))
    shares = config.get("source_shares")
    exported = f"`{shipped['command'] or 'python scripts/export_checkpoint.py'}`"
    if shipped.get("reference_measured_by"):
        exported += (" (a re-export in place; the run's full-precision reference figures are those of "
                     f"`{shipped['reference_measured_by']}`)")
    if not config.get("members"):
        return (f"Age regressor {origin(config)}, on {trained_on}{f' (shares of each batch: {shares})' if shares else ''}, "
                f"with `python scripts/train.py` and the config in `config.json`, then exported with {exported}.")
    runs = shipped.get("members") or [f"member {i}" for i in range(len(config["members"]))]
    members = "\n".join(f"- `{run}`: {member['image_size']} px, {origin(member)}."
                         for run, member in zip(runs, config["members"]))
    return (f"Age regressor averaging the age distributions of {len(runs)} CNNs trained on {trained_on}, made with "
            f"`python scripts/ensemble.py` from these runs of `python scripts/train.py` (their configs are the "
            f"`members` in `config.json`), then exported with {exported}.\n\n{members}\n\n"
            "Where a member's history names `cnn` or `checkpoints/cnn`, that is an earlier shipped CNN: "
            "`agejax/training/configs.py` gives its commit.")


def model_card(shipped: dict) -> str:
    config = shipped["config"]
    epochs = (f"Best epoch, chosen on validation: {shipped['best_epoch']} of {config['epochs']}." if not config.get("members")
              else "Each member's best epoch was chosen on validation in its own run.")
    rows = "\n".join(
        f"| {SOURCE_LABELS.get(s, s)} | {row['val_mae']:.2f} | **{row['test_mae']:.2f}** | {row['test_bias']:+.2f} | "
        f"{percent(row['test_coverage']['90'])} | `{row['manifest_sha256'][:12]}` |"
        for s, row in shipped["per_source"].items())
    flip = (f"yes (UTKFace validation {shipped['reference_val_mae']:.2f} with, "
            f"{shipped['reference_val_mae_without_flip']:.2f} without)" if shipped["test_time_flip"] else "no")
    under18 = ""
    if shipped.get("p_under18"):
        lines = "\n".join(
            f"| {SOURCE_LABELS.get(s, s)} | {row['reliability']['ece']:.3f} | {percent(row['at_0.5']['false_adult'])} "
            f"| {percent(row['at_0.5']['false_adult_13_17'])} | {percent(row['at_0.5']['false_minor'])} "
            f"| {percent(row['at_validation_threshold']['false_adult'])} "
            f"| {percent(row['at_validation_threshold']['false_minor'])} |"
            for s, row in shipped["p_under18"]["per_source"].items())
        threshold = shipped["p_under18"]["validation_threshold"]
        header = (f"| source | calibration error (ECE) | minors called adults at 0.5 | of them aged 13-17 | adults "
                  f"called minors at 0.5 | minors called adults at {threshold:.3f} | adults called minors at {threshold:.3f} |")
        under18 = f"""
"Under 18?" (`p_under18`, the distribution's mass below 18, Platt-calibrated on validation), on each test split.
It is an estimate with the error rates below, not age verification.

{header}
|---|---|---|---|---|---|---|
{lines}

The threshold {threshold:.3f} was chosen on validation to call at most 5 % of minors adults.
"""
    return f"""\
# agejax {shipped['name']}: {shipped['model']}

{how_made(shipped)}

| source (frozen split) | validation MAE | **test MAE** | test bias | 90 % interval covers | manifest |
|---|---|---|---|---|---|
{rows}
{under18}
- Test-time flip, chosen on validation: {flip}.
- {int8_line(shipped)}
- {epochs}
- {shipped['parameters']:,} parameters; input {config['image_size']}x{config['image_size']} RGB aligned face crop;
  weights {shipped['weights_mb']:.1f} MB ({shipped['weight_format']}); compression moved test MAE by at most
  {abs(shipped['compression_test_mae_shift']):.3f} years.

Every figure above is in `metrics.json`, written by the export command; the full reports are in `report/`
(UTKFace) and `report/<source>/`.

- **Data.** UTKFace and All-Age-Faces are for **non-commercial research only**, and so are these weights.
  Each source is split 80/10/10, stratified by age and gender; near-duplicate images were dropped.
- **Intended use.** Research and demos of apparent-age estimation from aligned faces. Not for decisions about
  people: errors are years wide, larger for the elderly, and the sources over-represent some groups (see the
  reports).
- **Limitations.** UTKFace's ages were estimated and checked by people, All-Age-Faces' are stated ages; children
  and people over 70 are few in training; old photos tend to read older; faces must be aligned like UTKFace chips.
"""
