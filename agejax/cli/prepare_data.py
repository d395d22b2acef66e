"""Reads UTKFace, reports skipped files, checks the frozen split and builds the decode-once cache.

    python scripts/prepare_data.py --source ../shared/data/utkface/ --size 64
    python scripts/prepare_data.py --source ../shared/data/utkface/ --size --tfds-dir ~/tensorflow_datasets
    python scripts/prepare_data.py --source ../shared/data/utkface/ --size --export test utk_test/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agejax import runtime
from agejax.data import cache, labels, split


def expand_sources(sources: list[str]) -> list[Path]:
    """A folder that holds archives stands for those archives; otherwise it is an image folder."""
    expanded = []
    for source in map(Path, sources):
        archives = sorted(p for p in source.iterdir() if labels.is_archive(p)) if source.is_dir() else []
        expanded += archives or [source]
    return expanded


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", nargs="+", required=True,
                        help="UTKFace folders and/or .tar.gz archives, in any mix; a folder of archives means all of them")
    parser.add_argument("--size", type=int, nargs="*", default=[64],
                        help="cache resolution(s) in pixels (default 64); none to only check the data")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT,
                        help=f"where caches are written (default {cache.DEFAULT_ROOT}, or $AGEJAX_CACHE)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--tfds-dir", type=Path,
                        help="also build the TFDS dataset `utkface` (array_record) into this data_dir")
    parser.add_argument("--export", nargs=2, metavar=("SPLIT", "DIR"),
                        help="also write one split's original files into DIR (e.g. to score them with "
                        "scripts/batch_predict.py --aligned)")
    args = parser.parse_args(argv)
    if args.export and args.export[0] not in split.SPLITS:
        parser.error(f"--export: split must be one of {', '.join(split.SPLITS)}")

    try:
        sources = expand_sources(args.source)
        scan = labels.scan(sources)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(f"sources: {', '.join(map(str, sources))}")
    print(scan.report())
    parts = split.apply_manifest(scan.records, split.read_manifest())
    print(parts.report())
    print(f"manifest: {split.MANIFEST_PATH} sha256 {split.manifest_hash()[:12]}")

    for size in args.size:
        summary = cache.build(sources, size, root=args.cache_root, workers=args.workers)
        decode_failures = summary.skipped[len(scan.skipped):]
        print(f"cache {size}px: built in {summary.seconds:.1f} s at {summary.path} "
              f"({', '.join(f'{k} {v}' for k, v in summary.sizes.items())})")
        if decode_failures:
            print("\n".join(labels.format_skipped(decode_failures)))
        start = time.perf_counter()
        for name in split.SPLITS:
            arrays = cache.load_split(name, size, root=args.cache_root)
            arrays.images[-1].sum()  # touch the memory map
        print(f"cache {size}px: loaded all splits in {time.perf_counter() - start:.3f} s (memory-mapped)")
        start = time.perf_counter()
        for name in split.SPLITS:
            cache.load_split(name, size, root=args.cache_root, mmap=False)
        print(f"cache {size}px: read all splits into memory in {time.perf_counter() - start:.2f} s")
    if args.tfds_dir:
        from agejax.data.utkface import build  # imports TFDS only when asked

        if len(sources) != 1 and not all(labels.is_archive(p) for p in sources):
            parser.error("--tfds-dir takes one folder, or archives that share a folder")
        manual_dir = sources[0] if sources[0].is_dir() else sources[0].parent
        start = time.perf_counter()
        build(manual_dir, args.tfds_dir)
        print(f"tfds: built utkface in {time.perf_counter() - start:.1f} s at {args.tfds_dir}; "
              f"read it with tfds.data_source('utkface', data_dir='{args.tfds_dir}')")
    if args.export:
        name, folder = args.export
        count = labels.export_files(parts.by_split[name], folder)
        print(f"export: wrote {count} {name} images to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
