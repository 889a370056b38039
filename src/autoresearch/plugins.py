"""Third-party proposers and policies, found through entry points and imported on demand.

A package declares, in its pyproject.toml::

    [project.entry-points."autoresearch.proposers"]
    mine = "my_package.proposer:make"      # a factory (arg, task, options) -> Proposer

    [project.entry-points."autoresearch.policies"]
    cautious = "my_package.policy:Cautious"  # a Policy subclass

and `--proposer mine` or `[decision] policy = "cautious"` finds it once installed. Only
the names are read at start-up (for --help and error messages); a plugin's code is
imported when its kind is chosen, and an import failure is a clear error.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from autoresearch.task import ConfigError


def plugins(group: str) -> dict[str, EntryPoint]:
    """Installed plugins of an entry point `group`, by name (nothing is imported)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def load_plugin(ep: EntryPoint, what: str) -> Any:
    """Import one plugin; a failure names the package and the fix, never a bare traceback."""
    try:
        return ep.load()
    except Exception as exc:  # any import-time error of third-party code
        dist = getattr(ep.dist, "name", None) or "its package"
        raise ConfigError(f"{what} plugin {ep.name!r} ({ep.value}, from {dist}) failed to "
                          f"import: {type(exc).__name__}: {exc}. Fix or reinstall {dist}, or "
                          f"uninstall it (pip uninstall {dist}).") from exc
