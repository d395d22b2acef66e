"""Reads labelled sources, reports what cannot be used, checks each frozen split and builds the caches.

    python scripts/prepare_data.py --source ../shared/data/utkface/ --size 96
    python scripts/prepare_data.py --source utkface=../shared/data/utkface/ --source aaf=../shared/data/aaf/ --size 96
    python scripts/prepare_data.py --source mine=photos/labels.csv --size 96      # your own path,age CSV
    python scripts/prepare_data.py --source ../shared/data/utkface/ --size --tfds-dir ~/tensorflow_datasets
    python scripts/prepare_data.py --source ../shared/data/utkface/ --size --export test utk_test/

A source is NAME=PATH (a bare PATH is UTKFace): utkface, aaf (All-Age-Faces), or any other
name for a folder with a path,age[,gender] CSV. Loose crops are detected and aligned once,
like UTKFace's chips; files with no face, several faces or no readable image are listed
with the reason. A user's source is split once (80/10/10, near-duplicates dropped) and the
split is kept under the cache and reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agejax import runtime
from agejax.data import cache, labels, prepare, sources, split


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", required=True, metavar="NAME=PATH",
                        help="a labelled source; give it once per source (a bare PATH is UTKFace)")
    parser.add_argument("--size", type=int, nargs="*", default=[96],
                        help="cache resolution(s) in pixels (default 96); none to only check the data")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT,
                        help=f"where caches are written (default {cache.DEFAULT_ROOT}, or $AGEJAX_CACHE)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--tfds-dir", type=Path,
                        help="also build the TFDS dataset `utkface` (array_record) into this data_dir")
    parser.add_argument("--export", nargs=2, metavar=("SPLIT", "DIR"),
                        help="also write one UTKFace split's original files into DIR (e.g. to score them with "
                        "scripts/batch_predict.py --aligned)")
    args = parser.parse_args(argv)
    if args.export and args.export[0] not in split.SPLITS:
        parser.error(f"--export: split must be one of {', '.join(split.SPLITS)}")
    try:
        specs = [sources.parse_source(text) for text in args.source]
        for spec in specs:
            prepare_one(spec, args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def prepare_one(spec: sources.SourceSpec, args: argparse.Namespace) -> None:
    faces = prepare.read_faces(spec, args.cache_root, args.workers)
    print(f"source {spec}")
    print(faces.report())
    manifest = split.manifest_path(spec.name, args.cache_root)
    if manifest.exists():
        reported = {skipped.file_name for skipped in faces.rejected}
        print(prepare.dropped_report(spec, args.cache_root, reported) or "", end="\n" if spec.kind != sources.UTKFACE else "")
        dropped = split.read_dropped(manifest)  # reported just above, not again as missing from the manifest
        kept = [record for record in faces.records if record.file_name not in dropped]
        print(split.apply_manifest(kept, split.read_manifest(manifest)).report())
    for size in args.size:
        start = time.perf_counter()
        built = prepare.prepare(faces, size, args.cache_root, args.workers)
        manifest = split.manifest_path(spec.name, args.cache_root)
        print(f"manifest: {manifest} sha256 {split.manifest_hash(manifest)[:12]}")
        if isinstance(built, cache.BuildSummary):
            decode_failures = built.skipped[len(faces.rejected):]
            if decode_failures:
                print("\n".join(labels.format_skipped(decode_failures)))
        sizes = {name: len(cache.load_split(name, size, args.cache_root, source=spec.name)) for name in split.SPLITS}
        print(f"cache {spec.name} {size}px: built in {time.perf_counter() - start:.1f} s at "
              f"{cache.cache_dir(size, args.cache_root, manifest)} ({', '.join(f'{k} {v}' for k, v in sizes.items())})")
    if spec.kind == sources.UTKFACE:
        utkface_extras(spec, faces, args)


def utkface_extras(spec: sources.SourceSpec, faces: prepare.SourceFaces, args: argparse.Namespace) -> None:
    paths = sources.expand(spec.path)
    if args.tfds_dir:
        from agejax.data.utkface import build  # imports TFDS only when asked

        if len(paths) != 1 and not all(labels.is_archive(p) for p in paths):
            raise ValueError("--tfds-dir takes one folder, or archives that share a folder")
        manual_dir = paths[0] if paths[0].is_dir() else paths[0].parent
        start = time.perf_counter()
        build(manual_dir, args.tfds_dir)
        print(f"tfds: built utkface in {time.perf_counter() - start:.1f} s at {args.tfds_dir}; "
              f"read it with tfds.data_source('utkface', data_dir='{args.tfds_dir}')")
    if args.export:
        name, folder = args.export
        parts = split.apply_manifest(faces.records, split.read_manifest())
        count = labels.export_files(parts.by_split[name], folder)
        print(f"export: wrote {count} {name} images to {folder}")


if __name__ == "__main__":
    sys.exit(main())
