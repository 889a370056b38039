"""A tag's life cycle beyond one run: restart after a failed baseline, undo, delete.

- `restart_if_fixed`: a tag whose baseline failed picks up the user's fix (a new commit).
- `undo_on_failure`: a start that failed before recording anything leaves nothing behind.
- `remove_tag`: `autoresearch clean --tag T`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from autoresearch.integrity.seal import head_path, key_path
from autoresearch.ledger import Ledger
from autoresearch.workspace import Workspace, git


def restart_if_fixed(ws: Workspace, metric: str) -> str | None:
    """A tag without a baseline (it failed) restarts from a newer commit of the user's branch.

    Nothing was ever kept, so nothing was judged under the old task: the run branch moves
    to HEAD (the failed baseline stays in the ledger and under refs/autoresearch/TAG/), the
    task is pinned again and the baseline is re-run on the fix. Returns what happened."""
    if not ws.branch_exists():
        return None
    rows = Ledger(ws.state, metric, key_path(ws.git_dir, ws.tag)).read()
    head = git("rev-parse", "HEAD", cwd=ws.root).strip()
    # Zero rows too: a start stopped before its baseline (e.g. by checks failing on it).
    if any(r.status == "keep" for r in rows) or head == ws.branch_tip():
        return None
    ws.set_branch(head)
    (ws.state / "protected.json").unlink(missing_ok=True)  # hashed again at the new commit
    return (f"tag {ws.tag} has no baseline yet and your branch has a new commit {head[:10]}: "
            "the tag restarts from it, under the task file as it is now"
            + (" (the failed baseline stays in the ledger)" if rows else "")
            + f". `autoresearch clean --tag {ws.tag}` removes the tag instead, or use a new "
            "--tag")


@contextmanager
def undo_on_failure(ws: Workspace, fresh: bool) -> Iterator[None]:
    """A tag that this invocation created (`fresh`) and that recorded nothing before an
    error (a proposer that failed at setup) is removed: no worktree, branch or empty
    ledger is left. A Ctrl-C is not an error: the tag is left to resume."""
    try:
        yield
    except Exception:
        jsonl = ws.state / "results.jsonl"
        if fresh and not (jsonl.exists() and jsonl.read_text().strip()):
            with ws.lock():
                remove_tag(ws)
        raise


def remove_tag(ws: Workspace) -> list[str]:
    """Everything of a tag: worktree, branch, refs, state directory and its key files.
    The caller holds the tag's lock and has asked the user. Returns what was removed."""
    gone = ws.remove()
    key = key_path(ws.git_dir, ws.tag)
    for path in (key, head_path(key)):
        if path.exists():
            path.unlink()
            gone.append(str(path))
    return gone
