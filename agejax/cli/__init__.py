"""Command-line entry points: the console scripts of pyproject.toml, also run as scripts/*.py."""
