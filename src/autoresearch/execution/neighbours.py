"""Other harnesses on this machine: they spoil each other's timings, so each start warns.

Every `autoresearch run` registers itself as one small file in a per-user runtime
directory (`$XDG_RUNTIME_DIR/autoresearch`, else `/tmp/autoresearch-UID`; overridable
with `AUTORESEARCH_RUNTIME_DIR`) and removes it when it ends. A file whose process is
gone (a SIGKILLed harness), or whose pid now belongs to a younger process, is stale and
deleted by the next start. Two runs sharing CPUs or a GPU measure each other's load:
budgets, allowances and noise estimates all shift, so results stop being comparable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Neighbour:
    pid: int
    repo: str
    tag: str


def runtime_dir() -> Path:
    if os.environ.get("AUTORESEARCH_RUNTIME_DIR"):
        return Path(os.environ["AUTORESEARCH_RUNTIME_DIR"])
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "autoresearch" if base else \
        Path(tempfile.gettempdir()) / f"autoresearch-{os.getuid()}"


def _alive(pid: int, created: float) -> bool:
    """The registered process still runs (not a recycled pid: same start time)."""
    try:
        return abs(psutil.Process(pid).create_time() - created) < 1.0
    except (psutil.Error, ValueError):
        return False


def neighbours(folder: Path | None = None) -> list[Neighbour]:
    """Live harnesses registered on this machine (stale entries are deleted)."""
    folder = folder or runtime_dir()
    found = []
    for entry in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(entry.read_text())
            pid, created = int(data["pid"]), float(data["created"])
        except (OSError, ValueError, KeyError, TypeError):
            entry.unlink(missing_ok=True)
            continue
        if pid == os.getpid():
            continue
        if _alive(pid, created):
            found.append(Neighbour(pid, str(data.get("repo", "?")), str(data.get("tag", "?"))))
        else:
            entry.unlink(missing_ok=True)
    return found


@contextmanager
def registered(repo: Path, tag: str) -> Iterator[list[Neighbour]]:
    """Register this harness for its lifetime; yield the other live ones."""
    folder = runtime_dir()
    mine = folder / f"{os.getpid()}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        others = neighbours(folder)
        mine.write_text(json.dumps({"pid": os.getpid(), "created": psutil.Process().create_time(),
                                    "repo": str(repo), "tag": tag}))
    except OSError:  # an unwritable runtime dir costs the warning, never the run
        others = []
    try:
        yield others
    finally:
        mine.unlink(missing_ok=True)


def warning(others: list[Neighbour]) -> str:
    where = "; ".join(f"pid {n.pid}: tag {n.tag} in {n.repo}" for n in others[:5])
    return (f"{len(others)} other autoresearch run(s) on this machine ({where}). They share "
            "its CPUs and GPUs, so each spoils the other's timings: budgets, the over-budget "
            "allowance and noise estimates shift. Run one at a time for comparable results.")
