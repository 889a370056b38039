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


class Tripwire:
    """Byte snapshots of small trusted files; `check()` restores and reports changes."""

    def __init__(self, git_dir: Path, state_dir: Path, tag: str, committed: list[Path]):
        # Only this tag's refs: another tag's harness may move its own meanwhile.
        self.groups: list[tuple[str, list[Path]]] = [
            ("the ledger", [state_dir / "results.jsonl", state_dir / "results.tsv"]),
            ("git hooks", [git_dir / "hooks"]),
            ("git config", [git_dir / "config"]),
            ("git refs", [git_dir / "refs" / "heads" / "autoresearch" / tag,
                          git_dir / "refs" / "autoresearch" / tag]),
            ("the experiment's committed files", committed),
        ]
        self._snap: dict[Path, bytes] = {}

    def _scan(self) -> dict[Path, bytes]:
        out: dict[Path, bytes] = {}
        for _, roots in self.groups:
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
        """Compare with the armed snapshot, put every changed file back, report them."""
        now = self._scan()
        changed = [p for p in set(now) | set(self._snap) if now.get(p) != self._snap.get(p)]
        found = []
        for path in sorted(changed):
            what = next((w for w, roots in self.groups
                         if any(path == r or r in path.parents for r in roots)), "a file")
            found.append(Violation(what, str(path)))
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


def fresh_copy(src: Path, dest: Path) -> Path:
    """A scratch copy of the worktree for one run, so what it writes never lands in a commit."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    return dest


def network_prefix() -> str | None:
    """A command prefix that runs without network access, or None where unavailable."""
    if shutil.which("unshare") is None:
        return None
    prefix = "unshare --net" if os.geteuid() == 0 else "unshare --net --map-root-user"
    probe = subprocess.run(f"{prefix} true", shell=True, capture_output=True)
    return prefix if probe.returncode == 0 else None
