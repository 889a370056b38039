"""autoresearch: run research experiments unattended, under constraints enforced by code.

One mutable surface, one metric, a fixed wall-clock budget, git as the undo button.
See `autoresearch --help` and the README.
"""

__version__ = "0.1.0"
