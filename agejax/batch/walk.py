"""Which files a batch run scores, and how: a fixed walk of the folder, split into shards by path,
and the job that both engines run."""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from agejax.data.images import IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int  # counts from 0
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r} is not I/N, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {text!r}: need 0 <= I < N")
        return cls(index, count)

    def owns(self, relative_path: str) -> bool:
        # A hash of the path, not its position, so every machine decides alone and
        # files added later do not move the others between shards.
        return zlib.crc32(relative_path.encode("utf-8", "surrogateescape")) % self.count == self.index


def walk_images(root: Path) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, error) for each image file under root, in a fixed sorted order.

    Directory symlinks are followed once; a directory reached again (a symlink loop)
    is reported with an error instead of being walked forever. Hidden entries and
    files without an image suffix are ignored.
    """
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path, relative: str) -> Iterator[tuple[str, str]]:
        try:
            status = directory.stat()
            key = (status.st_dev, status.st_ino)
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as err:
            yield relative, f"cannot list directory ({err.strerror or type(err).__name__})"
            return
        if key in seen:
            yield relative, "symlink loop: directory already scanned"
            return
        seen.add(key)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{relative}/{entry.name}" if relative else entry.name
            if "\n" in path or "\r" in path:
                yield path.encode("unicode_escape").decode("ascii"), "file name contains a line break"
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:  # e.g. a symlink loop: let the file read report it
                is_dir = False
            if is_dir:
                yield from visit(Path(entry.path), path)
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                yield path, ""

    yield from visit(Path(root), "")


def files_to_score(root: Path, shard: Shard | None, done: set[str],
                   on_skip: Callable[[str], None] | None = None) -> Iterator[tuple[str, str]]:
    """walk_images' (relative path, error) pairs of this shard that are not in ``done``;
    ``on_skip`` hears of each one that is."""
    for relative, error in walk_images(root):
        if shard is not None and not shard.owns(relative):
            continue
        if relative not in done:
            yield relative, error
        elif on_skip is not None:
            on_skip(relative)


@dataclasses.dataclass(frozen=True)
class BatchJob:
    """One folder to score, as both engines take it."""

    root: Path
    aligned: bool = False  # inputs are aligned face crops: no detection
    whole_if_no_face: bool = False
    detector: str = "auto"  # one of agejax.faces.cascade.DETECTORS
    batch_size: int = 64
    shard: Shard | None = None
    done: frozenset[str] = frozenset()  # paths the CSV already holds (resume)
    progress: bool = True

    def files(self, on_skip: Callable[[str], None] | None = None) -> Iterator[tuple[str, str]]:
        return files_to_score(Path(self.root), self.shard, set(self.done), on_skip)
