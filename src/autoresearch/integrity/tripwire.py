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
from collections.abc import Callable
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
    ours: bool  # the change counts against the experiment
    restored: bool = False  # put back from the snapshot (small files only)


SMALL = 1 << 20  # files up to this size are snapshotted whole (and can be put back)


@dataclass(frozen=True)
class Watch:
    what: str  # how a reason names it, e.g. "the ledger"
    roots: list[Path]  # files or directories
    counts: bool = True  # a change makes the experiment invalid
    restore: bool = True  # put back from the snapshot (only what the harness owns)


def _ledger(state_dir: Path) -> Watch:
    # results.jsonl and .tsv grow with the tag: the Ledger checks them itself by stat
    # (`Ledger.intact`), so the cost per experiment stays flat.
    return Watch("the ledger", [state_dir / "protected.json"])


def _users(git_dir: Path) -> list[Watch]:
    # The user may change these during a night (commit, switch branch, git config, install a
    # hook, gc), so they are never put back: that could undo the user's own work. A changed
    # hook or config still counts against the experiment, and the reason names the file so
    # it can be inspected; our own git calls run with hooks and fsmonitor off regardless.
    return [Watch("your repository's git hooks or config", [git_dir / "hooks",
                                                            git_dir / "config"], True, False),
            Watch("your repository's refs", [git_dir / "HEAD", git_dir / "packed-refs",
                                             git_dir / "refs" / "heads"], False, False)]


class Tripwire:
    """Snapshots of the files the harness trusts; `check()` restores and reports changes.

    Small files are kept whole and can be put back; larger ones (data shards) are stamped
    by size and mtime, so a change is reported but cannot be undone here.
    """

    def __init__(self, groups: list[Watch]):
        self.groups = groups
        self._snap: dict[Path, bytes | tuple[int, int]] = {}

    @classmethod
    def for_runs(cls, admin: Path, state_dir: Path, ref: Path, committed: list[Path],
                 readonly: list[Path], git_dir: Path) -> Tripwire:
        """What an experiment phase must leave alone. `admin` is our worktree's own git
        directory (its HEAD and index: the evaluate phase is exported from that index);
        `ref` is this tag's branch file; `readonly` the data the task reads but never
        writes (tokenizer, shards)."""
        return cls([
            _ledger(state_dir),
            Watch("the run branch", [ref, admin / "HEAD"]),
            Watch("the git index", [admin / "index"]),
            Watch("the experiment's committed files", committed),
            Watch("read-only data", readonly),
            *_users(git_dir),
        ])

    @classmethod
    def for_proposer(cls, admin: Path, state_dir: Path, ref: Path, git_dir: Path) -> Tripwire:
        """What a proposer must leave alone: it edits files, it never touches git."""
        return cls([_ledger(state_dir), Watch("the run branch", [ref, admin / "HEAD"]),
                     *_users(git_dir)])

    def _scan(self) -> dict[Path, bytes | tuple[int, int]]:
        out: dict[Path, bytes | tuple[int, int]] = {}
        for watch in self.groups:
            for root in watch.roots:
                for f in _files_under(root):
                    try:
                        st = f.stat()
                        out[f] = f.read_bytes() if st.st_size <= SMALL else \
                            (st.st_size, st.st_mtime_ns)
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
            watch = next((w for w in self.groups
                          if any(path == p or p in path.parents for p in w.roots)),
                         Watch("a file", [], False, False))
            what, restore = watch.what, watch.restore
            before = self._snap.get(path)
            if what == "the run branch" and before is not None and path not in now \
                    and _packed(path, before):
                continue  # `git pack-refs` moved the ref into packed-refs, unchanged
            undone = False
            if restore and isinstance(before, bytes):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(before)
                undone = True
            elif restore and before is None:
                path.unlink(missing_ok=True)
                undone = True
            found.append(Violation(what, str(path), watch.counts, undone))
        return found


def tampered(wire: Tripwire, ledger_intact: Callable[[], bool]) -> str | None:
    """After a phase: what it changed among the files the harness trusts (restored where it
    can be), or None. The one check every phase and the proposer go through."""
    found = [v for v in wire.check() if v.ours]  # not the user's own refs
    if not ledger_intact():
        found.insert(0, Violation("the ledger", "results.jsonl/tsv, rewritten from the "
                                  "harness's records", True, True))
    return describe(found) if found else None


def describe(violations: list[Violation]) -> str:
    """'the ledger (path); read-only data (path, cannot be restored)' for a ledger reason."""
    return "; ".join(f"{v.what} ({v.path}{'' if v.restored else ', not restored'})"
                     for v in violations[:5])


def _packed(ref_file: Path, content: bytes | tuple[int, int]) -> bool:
    """Whether packed-refs now holds this loose ref's old value (a gc, not a change)."""
    parts = ref_file.parts
    if "refs" not in parts or not isinstance(content, bytes):
        return False
    i = len(parts) - 1 - parts[::-1].index("refs")
    name = "/".join(parts[i:])
    packed = Path(*parts[:i]) / "packed-refs"
    try:
        return f"{content.decode().strip()} {name}" in packed.read_text().splitlines()
    except OSError:
        return False


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
