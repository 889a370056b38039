"""Git as the undo button: the run branch, the experiment worktree, kept and discarded commits.

Layout for ``autoresearch run --tag TAG`` in a repository ``R``:

- branch ``autoresearch/TAG``: the incumbent; it only ever advances to kept commits.
- ``R/.autoresearch/TAG/``: the ledger, logs and harness state (listed in
  ``.git/info/exclude``, so never committed and never in the user's way).
- ``R/.autoresearch/TAG/worktree``: a git worktree on the run branch where
  proposers edit and experiments run. The user's checkout, index and HEAD are
  never touched.
- ``refs/autoresearch/TAG/discarded/N``: experiment N's commit when it was not
  kept, so every diff stays inspectable (``git show refs/autoresearch/TAG/discarded/7``).

Commits are made with ``git commit-tree`` after the experiment ran, so the
message can hold the result, and the run branch moves only by ``update-ref``.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from autoresearch.ledger import Experiment

STATE_DIR = ".autoresearch"


class WorkspaceError(RuntimeError):
    """The repository is not in a state the harness can safely work in."""


@dataclass(frozen=True)
class DiffStat:
    files: int
    insertions: int
    deletions: int


@dataclass(frozen=True)
class Staged:
    tree: str  # the tree id of the worktree as the proposer left it
    paths: list[str]  # every changed path: modified, added, deleted (both sides of a rename)
    stat: DiffStat
    patch: str  # unified diff against the incumbent
    special: list[str]  # changed paths that became symlinks or submodules (never allowed)


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    # Hooks off: an experiment could have planted one to run at our next git call.
    proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
                           *args], cwd=cwd,
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Path-segment glob, as `Path.glob` reads it: `*` and `?` stay within one directory,
    `**` spans directories. (fnmatch's `*` crosses `/`, so `*.py` would match any depth.)"""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            out.append(fnmatch.translate(pattern[i:end + 1])[4:-3])  # the class alone
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True if the repo-relative posix `path` matches one of the glob `patterns` exactly."""
    return any(_glob_regex(pat).match(path) for pat in patterns)


def unpack(data: bytes, dest: Path) -> None:
    """Extract tar bytes from `git archive` (regular files, dirs, exec bits) into `dest`."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="tar")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _identity_env(root: Path) -> dict[str, str]:
    """Commit identity: the user's when configured, else a clear harness default."""
    env = dict(os.environ)
    if not git("config", "user.email", cwd=root, check=False).strip():
        env.setdefault("GIT_AUTHOR_EMAIL", "autoresearch@localhost")
        env.setdefault("GIT_COMMITTER_EMAIL", "autoresearch@localhost")
    if not git("config", "user.name", cwd=root, check=False).strip():
        env.setdefault("GIT_AUTHOR_NAME", "autoresearch")
        env.setdefault("GIT_COMMITTER_NAME", "autoresearch")
    return env


class Workspace:
    def __init__(self, repo: Path, tag: str):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", tag) or ".." in tag:
            raise WorkspaceError(f"--tag {tag!r}: use letters, digits, '.', '_' and '-' "
                                 "(it names a branch and a folder), e.g. --tag nov28.")
        self.tag = tag
        top = git("rev-parse", "--show-toplevel", cwd=repo, check=False).strip()
        if not top:
            raise WorkspaceError(f"{repo} is not inside a git repository. Run `git init` and "
                                 "commit your files first; autoresearch uses git as its undo.")
        self.root = Path(top)
        if not git("rev-parse", "--verify", "-q", "HEAD", cwd=self.root, check=False).strip():
            raise WorkspaceError("the repository has no commits yet. Commit your files first "
                                 "(git add -A && git commit -m 'initial').")
        common = Path(git("rev-parse", "--git-common-dir", cwd=self.root).strip())
        self.git_dir = common if common.is_absolute() else (self.root / common).resolve()
        self.branch = f"autoresearch/{tag}"
        self.branch_file = self.git_dir / "refs" / "heads" / "autoresearch" / tag
        self.state = self.root / STATE_DIR / tag
        self.worktree = self.state / "worktree"
        self._env = _identity_env(self.root)

    # -- start-up -----------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """One harness per tag: a second `run --tag` on the same repo is refused.

        The holder's pid is written into the lock file (after the lock is taken: opening
        does not truncate, so a refused second harness never erases it), so the dashboard's
        stop button can signal the harness as Ctrl-C would."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceError(f"another `autoresearch run --tag {self.tag}` is running "
                                     "on this repository; stop it or pick another tag.") from None
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield

    def assert_clean(self) -> None:
        """Refuse to start over uncommitted changes to tracked files; never touch them."""
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=self.root).splitlines()
        if dirty:
            listing = "\n  ".join(line[3:] for line in dirty[:10])
            more = f"\n  ... and {len(dirty) - 10} more" if len(dirty) > 10 else ""
            raise WorkspaceError(
                f"uncommitted changes to tracked files:\n  {listing}{more}\n"
                "autoresearch starts from a commit and never touches your work. Commit them "
                "(git commit -am '...') or stash them (git stash), then run again.")

    def assert_tracked(self, files: list[str], editable: tuple[str, ...]) -> None:
        """The experiment worktree holds committed files only: the task's must be there."""
        tracked = set(filter(None, git("ls-files", "-z", cwd=self.root).split("\0")))
        missing = sorted(f for f in files if f not in tracked)
        missing += [p for p in editable if not any(matches(t, [p]) for t in tracked)]
        if missing:
            raise WorkspaceError(
                f"not committed: {', '.join(missing)}. Experiments run on a checkout of your "
                f"last commit; add them (git add {' '.join(missing)} && git commit) first.")

    def ignore_state_dir(self) -> None:
        exclude = self.git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if f"/{STATE_DIR}/" not in lines:
            with open(exclude, "a") as fh:
                fh.write(f"\n# autoresearch ledgers, logs and worktrees\n/{STATE_DIR}/\n")

    def branch_exists(self) -> bool:
        ref = f"refs/heads/{self.branch}"
        return bool(git("rev-parse", "--verify", "-q", ref, cwd=self.root, check=False).strip())

    def create_branch(self) -> str:
        git("branch", self.branch, "HEAD", cwd=self.root)
        return self.branch_tip()

    def branch_tip(self) -> str:
        return git("rev-parse", f"refs/heads/{self.branch}", cwd=self.root).strip()

    def open_worktree(self) -> None:
        """Create the worktree, or bring a leftover one back to the branch tip, clean."""
        if (self.worktree / ".git").exists():
            self.restore()
            return
        git("worktree", "prune", cwd=self.root)
        self.state.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--force", "-q", str(self.worktree), self.branch, cwd=self.root)

    def admin_dir(self) -> Path:
        """The worktree's own git directory (.git/worktrees/NAME): its HEAD and index."""
        return Path(git("rev-parse", "--absolute-git-dir", cwd=self.worktree).strip())

    def close_worktree(self) -> None:
        if self.worktree.exists():
            git("worktree", "remove", "--force", str(self.worktree), cwd=self.root, check=False)
        git("worktree", "prune", cwd=self.root, check=False)

    def remove(self) -> list[str]:
        """Delete the tag: its worktree, branch, refs/autoresearch/TAG/* and state directory
        (ledger, logs). Returns what was removed, in words. The caller asks first."""
        gone: list[str] = []
        self.close_worktree()
        if self.branch_exists():
            git("branch", "-D", "-q", self.branch, cwd=self.root)
            gone.append(f"branch {self.branch}")
        refs = git("for-each-ref", "--format=%(refname)", f"refs/autoresearch/{self.tag}/",
                   cwd=self.root).split()
        for ref in refs:
            git("update-ref", "-d", ref, cwd=self.root)
        if refs:
            gone.append(f"{len(refs)} refs under refs/autoresearch/{self.tag}/")
        if self.state.exists():
            shutil.rmtree(self.state)
            gone.append(str(self.state))
        return gone

    # -- inside an experiment ------------------------------------------------------
    def stage(self, tip: str, source: Path | None = None) -> Staged:
        """Stage everything the proposer did; return the tree, changed paths, stats and patch.

        `source` is the plain tree the proposer edited (an `export`: no `.git` in it, so a
        proposer never touches the repository); by default, the worktree itself.
        Three git calls: `add -A` (new, deleted and renamed files included), `write-tree`,
        and one `diff --cached` whose -z raw block names every changed path and its mode.
        """
        tree = self.snapshot(source)
        out = git("diff", "--cached", "--no-renames", "--no-color", "--raw", "--numstat", "-z",
                  "-p", tip, cwd=self.worktree)
        # -z output: raw entries (":old new sha sha X" NUL path NUL), numstat entries
        # ("ins<TAB>del<TAB>path" NUL), an empty field, then the patch.
        head, _, patch = out.partition("\0\0")
        fields = head.split("\0")
        paths, special, ins, dels = [], [], 0, 0
        i = 0
        while i < len(fields):
            field = fields[i]
            if field.startswith(":"):
                # A symlink (120000) could point the commit at a file outside the repo; a
                # gitlink (160000) at another repository: the commit would not pin the code.
                if field.split()[1] in ("120000", "160000"):
                    special.append(fields[i + 1])
                paths.append(fields[i + 1])
                i += 2
                continue
            if field:
                added, deleted, _path = field.split("\t", 2)
                ins += int(added) if added.isdigit() else 0  # "-" for binary files
                dels += int(deleted) if deleted.isdigit() else 0
            i += 1
        return Staged(tree, sorted(paths), DiffStat(len(paths), ins, dels), patch, special)

    def export(self, dest: Path) -> Path:
        """A fresh copy of the staged tree (not the directory) at `dest`, for one phase.

        Built from git's index, so files git ignores, and anything written into the
        worktree since staging, never reach an experiment.
        """
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Exports live inside the user's repository; a `.git` file pointing nowhere beside
        # them stops git's discovery there, so a git command run in an export (without the
        # sandbox, which hides the repository anyway) fails instead of reaching the user's.
        stop = dest.parent / ".git"
        if not stop.exists():
            stop.write_text("gitdir: /nonexistent/autoresearch-export\n")
        git("checkout-index", "-a", "-f", f"--prefix={dest}/", cwd=self.worktree)
        return dest

    def export_tree(self, tree: str, dest: Path) -> Path:
        """A fresh copy of the git tree `tree` at `dest`, without touching any index.

        `git archive` reads only the object database, so worker threads and Ray tasks can
        export while the decision point moves the branch and the worktree's index.
        """
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        stop = dest.parent / ".git"  # as in `export`: git's discovery stops here
        if not stop.exists():
            stop.write_text("gitdir: /nonexistent/autoresearch-export\n")
        unpack(self.archive(tree), dest)
        return dest

    def archive(self, tree: str) -> bytes:
        """The tree as tar bytes: what a remote worker receives (no shared filesystem)."""
        return subprocess.run(["git", "archive", "--format=tar", tree], cwd=self.root,
                              check=True, capture_output=True).stdout

    def tree_of(self, commit: str) -> str:
        return git("rev-parse", f"{commit}^{{tree}}", cwd=self.root).strip()

    def diff_trees(self, a: str, b: str) -> str:
        """The unified diff from tree-ish `a` to `b` (what a rebased proposal changes)."""
        return git("diff", "--no-color", "--no-renames", a, b, cwd=self.root)

    def merge_onto(self, tip: str, parent: str, tree: str) -> str | None:
        """Carry `tree`, made on commit `parent`, onto `tip` (a descendant of `parent`) by a
        3-way merge; the merged tree, or None on a conflict.

        The result is a tree nobody has measured yet: the caller must run it before keeping
        it. A throwaway commit of `tree` gives git the merge base (git < 2.40 has no
        `--merge-base` for trees).
        """
        side = self.commit(tree, parent, "autoresearch: proposal to rebase")
        out = subprocess.run(["git", "merge-tree", "--write-tree", "--no-messages", tip, side],
                             cwd=self.root, capture_output=True, text=True,
                             env={**os.environ, **self._env})
        merged = out.stdout.split("\n", 1)[0].strip()
        return merged if out.returncode == 0 and merged else None

    def snapshot(self, source: Path | None = None) -> str:
        """Stage everything in the worktree (or in the plain tree `source`, read as the
        worktree's files) and return its tree id (nothing is committed)."""
        if source is not None:
            # Into the worktree's index, from files elsewhere: git reads them; the proposer's
            # tree never holds a .git (one it wrote is ignored, as git ignores any `.git`).
            git(f"--work-tree={source}", "add", "-A", cwd=self.worktree)
        else:
            git("add", "-A", cwd=self.worktree)
        return git("write-tree", cwd=self.worktree).strip()

    def commit(self, tree: str, parent: str, message: str) -> str:
        out = git("commit-tree", tree, "-p", parent, "-m", message, cwd=self.worktree,
                  env=self._env)
        return out.strip()

    def commit_experiment(self, tree: str, exp: Experiment, metric_name: str) -> str:
        """Experiment `exp` as one commit on its parent; the message holds the result."""
        shown = "n/a" if exp.metric is None else f"{exp.metric:.6f}"
        reason = exp.reason.splitlines()[0] if exp.reason else ""
        message = (f"{exp.description or '(no description)'}\n\n"
                   f"autoresearch: experiment {exp.id} (tag {self.tag})\n"
                   f"status: {exp.status}\n{metric_name}: {shown}\nreason: {reason}\n")
        return self.commit(tree, exp.parent, message)

    def advance(self, commit: str) -> None:
        """Keep: the branch (checked out in the worktree) moves to `commit`."""
        git("reset", "-q", "--hard", commit, cwd=self.worktree)

    def preserve(self, commit: str, exp_id: int) -> None:
        """Discard: keep the commit reachable under refs/autoresearch/TAG/discarded/N."""
        git("update-ref", self.discarded_ref(exp_id), commit, cwd=self.root)

    def discarded_refs(self) -> set[int]:
        """Experiment ids that have a refs/autoresearch/TAG/discarded/N ref (one git call)."""
        out = git("for-each-ref", "--format=%(refname)", f"refs/autoresearch/{self.tag}/discarded",
                  cwd=self.root)
        return {int(r.rsplit("/", 1)[1]) for r in out.split() if r.rsplit("/", 1)[1].isdigit()}

    def discarded_ref(self, exp_id: int) -> str:
        return f"refs/autoresearch/{self.tag}/discarded/{exp_id}"

    def restore(self, commit: str = "HEAD", clean: bool = True) -> None:
        """Put the worktree back exactly at `commit`: tracked files reset, untracked removed.

        `clean=False` skips `git clean` when everything new was staged by `stage()`
        (reset --hard then removes it) and runs happened in a scratch copy.
        """
        git("reset", "-q", "--hard", commit, cwd=self.worktree)
        if clean:
            git("clean", "-fdq", cwd=self.worktree)

    def set_branch(self, commit: str) -> None:
        git("update-ref", f"refs/heads/{self.branch}", commit, cwd=self.root)

    def blob_size(self, commit: str, path: str) -> int | None:
        """Size in bytes of `path` in `commit`, or None where it does not exist there."""
        out = git("cat-file", "-s", f"{commit}:{path}", cwd=self.root, check=False).strip()
        return int(out) if out.isdigit() else None

    def hashes(self, names: tuple[str, ...]) -> dict[str, str]:
        return {name: sha256(self.worktree / name) for name in names}
