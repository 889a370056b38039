"""Keeping the goalposts still: what a run must not touch, and how we notice if it did.

An experiment's code is adversarial by assumption: an optimizer finds every
loophole in its metric. Without a sandbox (see `network_prefix` for the one
isolation we can offer portably) we cannot stop a run from *trying*, so the
harness makes the attempt visible and undoes it:

- `Tripwire` snapshots the files the harness trusts (the ledger, the tag's
  refs, `.git/hooks`, `.git/config`, the protected files) before a phase and
  compares after it. Anything changed is restored from the snapshot and the
  experiment becomes `invalid`, naming what was touched.
- `Canaries` catch *reads* of evaluation-only data (the validation and holdout
  shards): their access time is set to the epoch before the training phase and
  checked after. Linux's default `relatime` updates it on the first read. On a
  `noatime` mount this check is unavailable, which `Canaries.supported` says.

What this does not cover: a run that reads the data through a path we were not
told about, or that writes somewhere we do not snapshot (your own checkout
outside the tracked worktree, say). The GPT template keeps its eval data in
one directory, which its autoresearch.toml lists under `eval_only`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def expand(path: str) -> Path:
    """`~`, `$VAR` and `${VAR:-default}` expansion for paths in autoresearch.toml."""
    def default(m: re.Match[str]) -> str:
        return os.environ.get(m.group(1)) or m.group(2)

    path = re.sub(r"\$\{(\w+):-([^}]*)\}", default, path)
    return Path(os.path.expanduser(os.path.expandvars(path)))


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return []


@dataclass(frozen=True)
class Violation:
    what: str  # a short human description, e.g. "the ledger (results.jsonl)"
    path: str
    restored: bool


def _harness_files(git_dir: Path, state_dir: Path) -> list[tuple[str, list[Path], bool]]:
    return [
        ("the ledger", [state_dir / "results.jsonl", state_dir / "results.tsv",
                        state_dir / "protected.json"], True),
        ("git hooks", [git_dir / "hooks"], True),  # a hook would run at our next git call
        ("git config", [git_dir / "config"], True),  # core.fsmonitor runs a command too
    ]


class Tripwire:
    """Byte snapshots of small trusted files; `check()` restores and reports changes."""

    def __init__(self, groups: list[tuple[str, list[Path], bool]]):
        """Groups of (description, files or directories, restore on change?). Files the
        user may legitimately change meanwhile (their branches, packed-refs) are only
        reported: putting them back could undo the user's own work."""
        self.groups = groups
        self._snap: dict[Path, bytes] = {}

    @classmethod
    def for_runs(cls, git_dir: Path, state_dir: Path, tag: str,
                 committed: list[Path]) -> Tripwire:
        """What an experiment phase must leave alone. Only this tag's branch: another tag's
        harness may move its own meanwhile. The worktree's index is watched because the
        evaluate phase is exported from it."""
        return cls([
            *_harness_files(git_dir, state_dir),
            ("git refs", [git_dir / "refs" / "heads" / "autoresearch" / tag,
                          *sorted(git_dir.glob("worktrees/*/HEAD"))], True),
            ("the git index", sorted(git_dir.glob("worktrees/*/index")), True),
            ("the experiment's committed files", committed, True),
            ("your repository's refs", [git_dir / "HEAD", git_dir / "packed-refs"], False),
        ])

    @classmethod
    def for_proposer(cls, git_dir: Path, state_dir: Path, tag: str) -> Tripwire:
        """What a proposer must leave alone: it edits files, it never touches git."""
        ours = [git_dir / "refs" / "heads" / "autoresearch" / tag,
                *git_dir.glob("worktrees/*/HEAD")]
        return cls([
            *_harness_files(git_dir, state_dir),
            ("git refs", ours, True),
            ("your repository's refs", [git_dir / "HEAD", git_dir / "packed-refs",
                                        git_dir / "refs" / "heads"], False),
        ])

    def _scan(self) -> dict[Path, bytes]:
        out: dict[Path, bytes] = {}
        for _, roots, _restore in self.groups:
            for root in roots:
                for f in _files_under(root):
                    try:
                        out[f] = f.read_bytes()
                    except OSError:
                        continue
        return out

    def arm(self) -> None:
        self._snap = self._scan()

    def check(self) -> list[Violation]:
        """Compare with the armed snapshot, put changed files back where the group says so,
        and report them all (`Violation.restored` tells which were ours to restore)."""
        now = self._scan()
        changed = [p for p in set(now) | set(self._snap) if now.get(p) != self._snap.get(p)]
        found = []
        for path in sorted(changed):
            what, restore = next(((w, r) for w, roots, r in self.groups
                                  if any(path == p or p in path.parents for p in roots)),
                                 ("a file", False))
            found.append(Violation(what, str(path), restore))
            if not restore:
                continue
            if path in self._snap:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._snap[path])
            else:
                path.unlink(missing_ok=True)
        return found


class Canaries:
    """Detect reads (access time) and writes (size, mtime) of eval-only files during training."""

    def __init__(self, paths: list[Path], reads: bool = True):
        self.files = [f for p in paths for f in _files_under(p)]
        self.reads = reads
        self._stamp: dict[Path, tuple[int, int]] = {}

    @staticmethod
    def supported(directory: Path) -> bool:
        """Whether reads update atime on this filesystem (not on `noatime` mounts)."""
        with tempfile.NamedTemporaryFile(dir=directory) as fh:
            fh.write(b"x")
            fh.flush()
            os.utime(fh.name, ns=(0, os.stat(fh.name).st_mtime_ns))
            with open(fh.name, "rb") as again:
                again.read()
            return os.stat(fh.name).st_atime > 0

    def arm(self) -> None:
        for f in self.files:
            st = os.stat(f)
            if self.reads:
                os.utime(f, ns=(0, st.st_mtime_ns))
            self._stamp[f] = (st.st_size, st.st_mtime_ns)

    def tripped(self) -> list[str]:
        """'read PATH' / 'changed PATH' / 'deleted PATH' for each file touched since `arm`."""
        found = []
        for f in self.files:
            try:
                st = os.stat(f)
            except OSError:
                found.append(f"deleted {f}")
                continue
            if (st.st_size, st.st_mtime_ns) != self._stamp.get(f):
                found.append(f"changed {f}")
            elif self.reads and st.st_atime > 0:
                found.append(f"read {f}")
        return found


def network_prefix() -> str | None:
    """A command prefix that runs without network access, or None where unavailable."""
    if shutil.which("unshare") is None:
        return None
    prefix = "unshare --net" if os.geteuid() == 0 else "unshare --net --map-root-user"
    probe = subprocess.run(f"{prefix} true", shell=True, capture_output=True)
    return prefix if probe.returncode == 0 else None
