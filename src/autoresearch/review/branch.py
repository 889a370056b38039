"""The review branch: a night's kept changes as commits someone can read and merge.

``autoresearch/TAG`` holds the kept commits as the loop made them: the baseline's empty
commit, one commit per kept experiment, messages written for the harness. The review
branch ``autoresearch/TAG-review`` starts at the tag's base (the commit the baseline ran on)
and holds one commit per kept change, in order, each message stating the change, its
measured effect with its uncertainty, and the experiment number.

A kept change that later changes undid is squashed away: when its patch still applies to
the final tree and does not revert from it, what it replaced is back, so it is reverted
from every review tree that still holds it; the churn never shows and a commit left empty
is dropped. The last review tree is the best kept tree itself, so it always equals it
(`build` asserts it).

Commits are built from trees with a private index (`GIT_INDEX_FILE`), so the user's
checkout, index and the run branch are never touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoresearch.ledger import Experiment
from autoresearch.workspace import WorkspaceError, git


@dataclass(frozen=True)
class Change:
    exp: Experiment
    before: str  # tree before the change (the previous kept tree)
    after: str  # tree after it
    paths: tuple[str, ...]  # files the change touched


@dataclass(frozen=True)
class Review:
    branch: str
    base: str  # the commit the review branch starts from
    commits: tuple[tuple[int, str], ...]  # (experiment id, review commit), in order
    squashed: tuple[int, ...]  # kept experiments whose change was later undone
    tree: str  # the final tree: equal to the best kept commit's


def _tree(repo: Path, rev: str) -> str:
    return git("rev-parse", f"{rev}^{{tree}}", cwd=repo).strip()


def _changed(repo: Path, a: str, b: str) -> tuple[str, ...]:
    out = git("diff", "--name-only", "--no-renames", "-z", a, b, cwd=repo)
    return tuple(sorted(p for p in out.split("\0") if p))


def base_commit(rows: list[Experiment]) -> str:
    """The commit the tag started from: the baseline's parent."""
    kept = [e for e in rows if e.status == "keep"]
    if not kept or not kept[0].commit:
        raise WorkspaceError("the tag has no kept baseline yet, so there is nothing to "
                             "finalize. Run `autoresearch run` first.")
    return kept[0].parent or kept[0].commit


def changes(repo: Path, rows: list[Experiment]) -> list[Change]:
    """Each kept experiment after the baseline as a change from the previous kept tree."""
    kept = [e for e in rows if e.status == "keep"]
    previous = _tree(repo, base_commit(rows))
    out = []
    for e in kept:
        after = _tree(repo, e.commit)
        if e.proposer != "baseline":
            out.append(Change(e, previous, after, _changed(repo, previous, after)))
        previous = after
    return out


def patch(repo: Path, c: Change) -> str:
    # No context lines: in a file of adjacent constants, a later change to the next line
    # must not stop this one from applying or reverting on its own.
    return git("diff", "-U0", "--binary", "--full-index", "--no-renames", "--no-color",
               c.before, c.after, cwd=repo)


def apply(repo: Path, tree: str, diff: str, env: dict[str, str], reverse: bool = False
          ) -> str | None:
    """`tree` with `diff` applied (or reverted), as a new tree; None if it does not apply."""
    git("read-tree", tree, cwd=repo, env=env)
    proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "apply", "--cached",
                           "--unidiff-zero", *(["-R"] if reverse else []), "-"], cwd=repo,
                          env=env,
                          input=diff, capture_output=True, text=True)
    return git("write-tree", cwd=repo, env=env).strip() if proc.returncode == 0 else None


def undone(repo: Path, steps: list[Change], final: str, env: dict[str, str]) -> list[Change]:
    """Kept changes none of whose effect survives: the final tree still holds (or holds
    again) what each replaced, so the change applies to it afresh and does not revert from
    it. A change that a later one superseded (the same line changed again) is neither."""
    out = []
    for c in steps:
        d = patch(repo, c)
        if d and apply(repo, final, d, env) is not None and \
                apply(repo, final, d, env, reverse=True) is None:
            out.append(c)
    return out


def _without(repo: Path, tree: str, gone: list[tuple[Change, str]], upto: int,
             env: dict[str, str]) -> str:
    """`tree` (the kept tree after experiment `upto`) with the undone changes made at or
    before it reverted, where they still are in it."""
    for c, d in gone:
        if c.exp.id <= upto:
            tree = apply(repo, tree, d, env, reverse=True) or tree
    return tree


def commit_message(c: Change, metric: str, tag: str, before: float | None) -> str:
    e = c.exp
    ev = e.evidence
    lines = [e.description or f"experiment {e.id}", ""]
    if e.metric is not None and before is not None:
        effect = f"{metric}: {before:.6f} -> {e.metric:.6f} ({e.metric - before:+.6f})"
        if ev.get("sigma"):
            effect += f", noise sd {float(ev['sigma']):.6f}"
        if ev.get("confidence") is not None:
            effect += f", confidence {float(ev['confidence']):.1%}"
        n = len(ev.get("samples") or [e.metric])
        effect += f", {n} run{'s' if n != 1 else ''}"
        if not ev.get("sigma"):
            effect += " (noise not estimated)"
        lines.append(effect)
    if e.holdout is not None:
        lines.append(f"holdout {metric}: {e.holdout:.6f}")
    lines.append(f"autoresearch: experiment {e.id} of tag {tag} (commit {e.commit[:12]})")
    if e.reason:
        lines.append(f"decision: {e.reason.splitlines()[0]}")
    return "\n".join(lines) + "\n"


def build(repo: Path, rows: list[Experiment], tag: str, metric: str, force: bool = False
          ) -> Review:
    """Write branch autoresearch/TAG-review; see the module docstring."""
    branch = f"autoresearch/{tag}-review"
    kept = [e for e in rows if e.status == "keep"]
    base = base_commit(rows)
    steps = changes(repo, rows)
    final = _tree(repo, kept[-1].commit)
    env = {**os.environ}
    for var, default in (("GIT_AUTHOR_NAME", "autoresearch"), ("GIT_COMMITTER_NAME",
                         "autoresearch"), ("GIT_AUTHOR_EMAIL", "autoresearch@localhost"),
                         ("GIT_COMMITTER_EMAIL", "autoresearch@localhost")):
        if not git("config", "user.email" if "EMAIL" in var else "user.name", cwd=repo,
                   check=False).strip():
            env.setdefault(var, default)
    ref = f"refs/heads/{branch}"
    existing = git("rev-parse", "--verify", "-q", ref, cwd=repo, check=False).strip()
    commits: list[tuple[int, str]] = []
    tip, tip_tree = base, _tree(repo, base)
    before = kept[0].metric
    with tempfile.TemporaryDirectory(prefix="autoresearch-review-") as tmp:
        ienv = {**env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        gone = undone(repo, steps, final, ienv)
        gone_ids = {c.exp.id for c in gone}
        diffs = [(c, patch(repo, c)) for c in gone]
        for c in steps:
            tree = _without(repo, c.after, diffs, c.exp.id, ienv)
            if c.exp.id not in gone_ids and tree != tip_tree:
                msg = commit_message(c, metric, tag, before)
                tip = git("commit-tree", tree, "-p", tip, "-m", msg, cwd=repo, env=env).strip()
                tip_tree = tree
                commits.append((c.exp.id, tip))
            before = c.exp.metric
    if tip_tree != final:  # cannot happen by construction; never publish a wrong branch
        raise WorkspaceError(f"internal error: the review tree {tip_tree} is not the best "
                             f"kept tree {final}; {branch} was not written.")
    if existing and existing != tip and not force:
        same = _tree(repo, existing) == final
        raise WorkspaceError(
            f"branch {branch} exists at {existing[:12]}"
            + (" (same final tree)" if same else ", with other content")
            + ". Nothing was changed. Pass --force to replace it (its commits stay reachable "
            "in the reflog), or delete it with `git branch -D " + branch + "`.")
    git("update-ref", "-m", "autoresearch finalize", ref, tip, cwd=repo)
    return Review(branch, base, tuple(commits), tuple(c.exp.id for c in gone), final)
