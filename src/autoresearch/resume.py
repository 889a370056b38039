"""Picking a tag up where the last harness left it, whatever killed that harness.

The loop finishes every experiment in one order: commit object -> ledger row
(fsync) -> refs -> `pending.json` removed. So a harness killed at any point
leaves one of these states, each repaired here before anything new starts:

- processes still running for the tag (an experiment's group, a proposer):
  killed, found by the group id in pending.json and by the AUTORESEARCH_STATE
  marker every child of the harness inherits;
- a run that never got its row: recorded as `interrupted`, its diff committed
  and preserved like any discarded experiment;
- a row whose refs never moved: the refs are moved now;
- a run branch that is not on the last kept commit: put back there.

Nothing is lost (the interrupted diff is kept) and nothing is counted twice
(the row id comes from pending.json, and a row that exists is never redone).
Nothing forged is adopted either: the ledger's seal chain is verified first, and a
ledger that fails it stops the start before anything is repaired.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from autoresearch.execution.process import kill_marked, sweep_orphans
from autoresearch.integrity.seal import key_path
from autoresearch.ledger import Experiment, Ledger
from autoresearch.workspace import Workspace


def owner_mark(state: Path) -> str:
    """A mark every process the harness starts inherits, sandboxed ones too (which do not
    get AUTORESEARCH_STATE: it would tell them where the ledger is). A hash, so it names no
    path; it finds a sandbox whose die-with-parent lost a race with a SIGKILL."""
    return hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:16]


def recover(ws: Workspace, ledger: Ledger, pending_path: Path, metric_name: str) -> str:
    """Repair the tag's state after any stop; return the run branch's commit.

    Raises LedgerError, before changing anything, if the ledger's seals do not verify."""
    if ledger.key_path is None:  # the harness never works on a ledger it cannot verify
        ledger.key_path = key_path(ws.git_dir, ws.tag)
    ledger.load()
    ws.ignore_state_dir()
    if not ws.branch_exists():
        ws.create_branch()
    # One file per experiment in flight (`inflight/ID.json`, several with parallel
    # workers); `pending.json` is what a harness before them wrote.
    files = sorted((ws.state / "inflight").glob("*.json")) if (ws.state / "inflight").is_dir() \
        else []
    if pending_path.exists():
        files.append(pending_path)
    for path in files:
        try:
            pending = json.loads(path.read_text() or "{}")
        except ValueError:  # torn by the kill: its group dies with the marker sweep below
            pending = {}
        for pgid in [pending.get("pgid"), *pending.get("pgids", [])]:
            if pgid:
                sweep_orphans(int(pgid), ws.state)
        kill_marked(f"AUTORESEARCH_STATE={ws.state}")  # e.g. a proposer mid-edit
        kill_marked(f"AUTORESEARCH_OWNER={owner_mark(ws.state)}")  # sandboxed phases
        row = ledger.by_id(pending.get("id", -1))
        if row is None and pending.get("tree"):
            row = Experiment(id=pending["id"], status="interrupted", parent=pending["parent"],
                             description=pending.get("description", ""),
                             started=pending.get("started", 0.0),
                             proposer=pending.get("proposer", ""),
                             reason="the harness stopped during this experiment; "
                                    "its result was never read",
                             diff={"tree": pending["tree"]})
            row = replace(row, commit=ws.commit_experiment(pending["tree"], row, metric_name))
            ledger.append(row)
        if row is not None and row.status not in ("keep", "remeasure") and row.commit:
            ws.preserve(row.commit, row.id)
        path.unlink()
    kill_marked(f"AUTORESEARCH_STATE={ws.state}")
    kill_marked(f"AUTORESEARCH_OWNER={owner_mark(ws.state)}")
    # A rejected proposal (invalid, duplicate) writes no pending.json: a kill between its
    # row and its ref would leave the commit unreachable. Every such row gets its ref.
    have = ws.discarded_refs()
    for e in ledger.experiments:
        if e.commit and e.status not in ("keep", "remeasure") and e.id not in have:
            ws.preserve(e.commit, e.id)
    kept = ledger.kept()
    if kept and ws.branch_tip() != kept[-1].commit:
        ws.set_branch(kept[-1].commit)
    ws.open_worktree()
    return ws.branch_tip()


def protected_hashes(ws: Workspace, names: tuple[str, ...]) -> dict[str, str]:
    """SHA-256 of the protected files, recorded when the tag starts and checked before every
    run. A file protected later is locked from then on, at the incumbent's content."""
    path = ws.state / "protected.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    added = [n for n in names if n not in saved]
    if added or not path.exists():
        saved.update(ws.hashes(tuple(added)))
        tmp = path.with_suffix(".tmp")  # atomic: a torn file would block every later start
        tmp.write_text(json.dumps(saved, indent=1))
        os.replace(tmp, path)
    return saved


def interrupted_to_rerun(rows: list[Experiment]) -> list[Experiment]:
    """Interrupted experiments whose tree was never measured since: run again, each once,
    before any new proposal."""
    measured = {e.diff.get("tree") for e in rows
                if e.status not in ("interrupted", "invalid", "duplicate")}
    seen: set[str] = set()
    out = []
    for e in rows:
        tree = e.diff.get("tree")
        if e.status == "interrupted" and tree and tree not in measured and tree not in seen:
            seen.add(tree)
            out.append(e)
    return out
