"""Command-line entry points: the console scripts of pyproject.toml, also run as scripts/*.py."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def from_home(arg: str) -> str:
    """``arg`` quoted for a shell, a path in the home directory written from ``~``, so that a
    report names no one's home."""
    home = str(Path.home()).rstrip("/") + "/"
    return "~/" + shlex.quote(arg[len(home):]) if arg.startswith(home) and len(arg) > len(home) else shlex.quote(arg)


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command as a user would retype it, for the reports that quote it."""
    return " ".join(["python", script, *map(from_home, sys.argv[1:] if argv is None else argv)])
