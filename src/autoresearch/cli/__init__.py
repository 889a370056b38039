"""The `autoresearch` command line: one module per group of commands.

`main` (in `cli.main`) is the entry point; domain errors become messages there and only
there. `common` holds what the commands share.
"""

from autoresearch.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
