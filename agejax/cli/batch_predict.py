"""Estimates the age of every face in a directory of images and writes one CSV row per face.

    python scripts/batch_predict.py photos/                       # wild photos (or: agejax-batch photos/)
    python scripts/batch_predict.py crops/ --aligned -o ages.csv  # aligned face crops (e.g. UTKFace)
    python scripts/batch_predict.py photos/ --resume              # continue a killed run
    python scripts/batch_predict.py photos/ --shard 0/4 -o part0.csv   # one of 4 machines
    python scripts/batch_predict.py crops/ --aligned --fast       # each face once: 2x faster
    python scripts/batch_predict.py photos/ --engine ray          # on Ray Data: a local cluster,
    python scripts/batch_predict.py photos/ --engine ray --address HOST:6379   # or an existing one

Columns: path (relative to DIR), face (0 = largest), crop (face, aligned or whole),
detector (the cascade stage that found the face: hog, cnn or hog_rotated), left, top,
right, bottom (box in the upright image's pixels), age, std (the distribution head's
uncertainty), low90, high90 (90 % prediction interval, calibrated on the validation
split), model, error (empty when scored). The model defaults to the shipped one with the
lowest validation MAE.

Files that cannot be scored get a row with the reason and the run goes on. The exit
status is 0 when every file was handled, 2 on a usage error, 1 when the CSV cannot
be written. Shards' CSVs, concatenated without their header lines, hold the same rows
as a single run. Where images are labelled (UTKFace file names, or --labels), the MAE
is printed and an evaluation report is written next to the CSV.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from agejax import runtime
from agejax.batch import local, sink, walk
from agejax.cli import command_line
from agejax.data import labels
from agejax.data.images import IMAGE_SUFFIXES
from agejax.evaluation import evaluate


def shard_argument(text: str) -> walk.Shard:
    try:
        return walk.Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, metavar="DIR", help="folder of images, searched recursively "
                        f"({', '.join(IMAGE_SUFFIXES)}; hidden files skipped)")
    parser.add_argument("-o", "--output", type=Path, default=Path("ages.csv"), help="CSV to write (default ages.csv)")
    parser.add_argument("--model", help="shipped model name (cnn, resnet50) or a checkpoint folder or training "
                        "run directory (default: the shipped model with the lowest validation MAE)")
    parser.add_argument("--aligned", action="store_true",
                        help="inputs are aligned face crops like UTKFace's: skip detection, score each whole file")
    parser.add_argument("--detector", choices=("auto", "hog", "cnn"), default="auto",
                        help="face detector: dlib's fast HOG, its CNN (finds turned, tilted and dim faces; "
                        "about half a second a photo), or auto: HOG, then the CNN where HOG finds no face "
                        "(the default)")
    parser.add_argument("--on-no-face", choices=("skip", "whole"), default="skip",
                        help="when no face is found: write a 'no face found' row (skip, the default) "
                        "or score the whole image (whole)")
    parser.add_argument("--fast", action="store_true",
                        help="score each face once instead of also mirrored (the model's test-time flip): "
                        "about twice as fast, slightly less accurate (both MAEs are in the model card); "
                        "the model column then says e.g. cnn-fast")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per model call (default 64)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an existing output CSV: files already in it are not scored again")
    parser.add_argument("--shard", type=shard_argument, metavar="I/N",
                        help="score only shard I of N (I from 0), chosen by a hash of each path")
    parser.add_argument("--labels", type=Path, help="CSV with columns path,age (paths relative to DIR): "
                        "print the MAE and write a report; UTKFace file names are used without it")
    parser.add_argument("--workers", type=int, default=None,
                        help="local engine: decode/detect processes (default: the CPU count; 0 reads in the main "
                        "process)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: worker processes on this machine (the default); ray: Ray Data tasks decode "
                        "and detect, an actor pool scores, and this process writes the same CSV")
    parser.add_argument("--address", help="ray engine: the cluster to join (e.g. HOST:6379 or auto); "
                        "without it a local Ray cluster is started for the run")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.labels is not None and not args.labels.is_file():
        parser.error(f"labels file {args.labels} not found")
    if args.engine == "ray" and args.workers is not None:
        parser.error("--workers is for the local engine; Ray sizes its own tasks")
    if args.engine != "ray" and args.address is not None:
        parser.error("--address needs --engine ray")
    return args


def read_labels(path: Path | None) -> dict[str, float] | None:
    """The --labels CSV as {path: age}, its bad rows reported; read before any scoring."""
    if path is None:
        return None
    ages, skipped = labels.read_age_labels(path)
    if skipped:
        print(f"labels: skipped {len(skipped)} rows:\n" + "\n".join(labels.format_skipped(skipped)), file=sys.stderr)
    return evaluate.normalized_labels(ages)


def report_labelled(args: argparse.Namespace, model_name: str, ages: dict[str, float] | None) -> int:
    """Prints the MAE of the labelled faces in the CSV and writes their report; 1 if it cannot be written."""
    rows = evaluate.labelled_rows(args.output, ages)
    if ages is not None:
        unscored = sorted(set(ages) - set(rows["paths"] if rows else ()))
        if unscored:
            shown = ", ".join(unscored[:10]) + (f" (+{len(unscored) - 10} more)" if len(unscored) > 10 else "")
            print(f"labels: {len(unscored)} labelled paths have no scored face in {args.output} "
                  f"(not in {args.directory}, unreadable, or no face found): {shown}", file=sys.stderr)
    if rows is None:
        return 0
    from agejax.evaluation import metrics, report  # scikit-learn and matplotlib: only where there is a report

    result = metrics.full_report(rows["true"], rows["predicted"], rows["std"], rows["genders"], rows["races"])
    command = command_line("scripts/batch_predict.py")
    result = {"model": model_name, "set": str(args.directory), "command": command, **result}
    out_dir = args.output.with_name(args.output.stem + "_report")
    try:
        report.write_evaluation(out_dir, model_name, result, rows["true"], rows["predicted"])
    except OSError as err:
        print(f"error: cannot write the report in {out_dir}: {err.strerror or err}; {args.output} is complete",
              file=sys.stderr)
        return 1
    overall = result["overall"]
    print(f"labelled faces {overall['count']}: MAE {overall['mae']:.2f} years; report in {out_dir}/", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    try:
        ages = read_labels(args.labels)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # The local engine's workers, or Ray, start first: their start-up overlaps loading the model,
    # and Ray's processes start before this one runs ONNX Runtime's threads.
    with contextlib.ExitStack() as stack:
        pool = None
        if args.engine == "local":
            pool = stack.enter_context(local.reader_pool(args.aligned, args.workers))
        else:
            from agejax.batch import ray_engine

            try:
                ray_engine.start(args.address, quiet=args.quiet)
            except (ConnectionError, RuntimeError, ValueError) as err:
                print(f"error: cannot start or join the Ray cluster{f' at {args.address}' if args.address else ''}: "
                      f"{err}", file=sys.stderr)
                return 2
        from agejax.serving.predict import Predictor, default_model  # imports ONNX Runtime: after the arguments are checked

        try:
            predictor = Predictor.load(args.model or default_model(), flip=False if args.fast else None)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            out, done = sink.open_output(args.output, args.resume, predictor.name)
        except sink.OutputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"error: cannot write {args.output}: {err.strerror or err}", file=sys.stderr)
            return 1
        try:
            with out:
                job = walk.BatchJob(args.directory, aligned=args.aligned, whole_if_no_face=args.on_no_face == "whole",
                                    detector=args.detector, batch_size=args.batch_size, shard=args.shard,
                                    done=frozenset(done), progress=not args.quiet)
                if args.engine == "ray":
                    summary = ray_engine.run(job, out, predictor)
                else:
                    summary = local.run(job, out, predictor, workers=args.workers, pool=pool)
        except OSError as err:
            print(f"error: cannot write {args.output}: {err.strerror or err}; rerun with --resume", file=sys.stderr)
            return 1
    print(summary.line(), file=sys.stderr)
    return report_labelled(args, predictor.name, ages)


if __name__ == "__main__":
    sys.exit(main())
