"""The one mutable surface: which changes a proposal may make.

Checked by the harness on the staged tree, after the proposer has finished and
before anything runs. A proposal is rejected (an `invalid` row, with the reason)
when it changes a file outside `editable`, touches a protected file, or grows an
editable file far beyond its size when the tag started.

The size rule closes a side door for unbudgeted compute: a proposer that trains
a model itself could smuggle the weights into the editable file as a literal.
The mutable surface is code; a file more than `GROWTH` times its starting size
(and over `FLOOR` bytes) is data, and the experiment never runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch.workspace import matches, sha256

GROWTH = 2.0  # an editable file may double in size over the whole tag
FLOOR = 100 * 1024  # bytes any editable file may reach, however small it started


def size_limit(start_size: int | None) -> int:
    """Bytes an editable file may have, from its size in the tag's baseline (None: new)."""
    return max(FLOOR, int(GROWTH * (start_size or 0)))


def scope_problem(changed: Sequence[str], workdir: Path, editable: Sequence[str],
                  protected_hashes: Mapping[str, str],
                  start_sizes: Mapping[str, int | None]) -> str | None:
    """Why the changed paths break the mutable surface, or None when they keep to it.

    `start_sizes` maps a changed editable path to its size at the tag's baseline (None
    where it did not exist then)."""
    if not changed:
        return "the proposal changed nothing"
    outside = [p for p in changed if not matches(p, tuple(editable))]
    if outside:
        return (f"changes outside the mutable surface ({', '.join(editable)}): "
                + ", ".join(outside))
    tampered = [n for n, h in protected_hashes.items() if sha256(workdir / n) != h]
    if tampered:
        return "protected files changed: " + ", ".join(tampered)
    for path in changed:
        target = workdir / path
        size = target.stat().st_size if target.is_file() else 0
        limit = size_limit(start_sizes.get(path))
        if size > limit:
            return (f"{path} grew to {size // 1024} KB, over its {limit // 1024} KB limit "
                    f"({GROWTH:g}x its size when the tag started): the mutable surface is "
                    "code, not data such as weights trained outside the budget")
    return None
