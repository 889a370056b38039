"""`autoresearch rebuild`: a ledger that does not verify, set aside and rebuilt from git.

Every experiment the harness finished is a commit whose message holds its result
(`Workspace.commit_experiment`): kept ones on the run branch ``autoresearch/TAG``
(first-parent chain back to where the tag started), the others under
``refs/autoresearch/TAG/discarded/N``. Those messages give back each record's id,
status, description, metric (to 6 decimals), first reason line, commit and parent.
What only the ledger held is gone: holdout scores, secondary metrics, logs, timings,
costs and decision evidence (noise samples); a re-measure has no commit of its own.

The old files are moved aside, never deleted, and the new ledger is sealed with a
fresh key. The caller holds the tag's lock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from autoresearch.integrity import seal
from autoresearch.ledger import STATUSES, Experiment, Ledger, LedgerError
from autoresearch.workspace import Workspace, git

_MARK = "\n\nautoresearch: experiment "
_PAGE = 256  # run-branch commits read per git call: the walk stops where the tag started


@dataclass(frozen=True)
class Rebuilt:
    records: list[Experiment]
    kept: int  # records found on the run branch
    discarded: int  # records found under refs/autoresearch/TAG/discarded/
    missing: list[int]  # ids below the last one that no commit holds
    moved: list[Path]  # the files set aside
    pin: str  # what happened to the task pin, in words


def parse_message(message: str, tag: str) -> tuple[Experiment, str] | None:
    """The record (without commit and parent) and the metric's name that a harness commit
    message of tag `tag` holds, or None for any other commit."""
    description, sep, trailer = message.rpartition(_MARK)
    lines = trailer.split("\n")
    if not sep or len(lines) < 4 or not lines[0].endswith(f" (tag {tag})"):
        return None
    number = lines[0][: -len(f" (tag {tag})")]
    name, _, shown = lines[2].rpartition(": ")
    status = lines[1][len("status: "):]
    if not number.isdigit() or not lines[1].startswith("status: ") or status not in STATUSES \
            or not lines[3].startswith("reason:") or not name:
        return None
    try:
        metric = None if shown == "n/a" else float(shown)
    except ValueError:
        return None
    exp = Experiment(id=int(number), status=status, description=description,
                     metric=metric, reason=lines[3][len("reason:"):].strip(),
                     evidence={"rebuilt": True})
    return exp, name


def _kept(ws: Workspace) -> list[tuple[str, str, str, str]]:
    """(commit, tree, first parent, message) along the run branch, newest first, for as
    long as the commits are this tag's experiments."""
    if not ws.branch_exists():
        return []
    out: list[tuple[str, str, str, str]] = []
    while True:
        page = git("log", "-z", "--first-parent", f"--skip={len(out)}", f"-n{_PAGE}",
                   "--format=%H%n%T%n%P%n%B", f"refs/heads/{ws.branch}", cwd=ws.root)
        entries = [e for e in page.split("\0") if e.strip()]
        for entry in entries:
            commit, tree, parents, message = entry.lstrip("\n").split("\n", 3)
            if parse_message(message, ws.tag) is None:
                return out  # the user's commit the tag started from
            out.append((commit, tree, (parents.split() or [""])[0], message))
        if len(entries) < _PAGE:
            return out


def _discarded(ws: Workspace) -> list[tuple[str, str, str, str]]:
    raw = git("for-each-ref", "--format=%(objectname)%00%(tree)%00%(parent)%00%(contents)%00%00",
              f"refs/autoresearch/{ws.tag}/discarded/", cwd=ws.root)
    out = []
    for entry in raw.split("\0\0\n"):
        if entry.strip():
            commit, tree, parents, message = entry.lstrip("\n").split("\0", 3)
            out.append((commit, tree, (parents.split() or [""])[0], message))
    return out


def recover_records(ws: Workspace) -> tuple[list[Experiment], int, int, str]:
    """Records from the harness's commits, by id; the counts per source and metric name."""
    found: dict[int, Experiment] = {}
    counts, name = [0, 0], ""
    for source, commits in enumerate((_kept(ws), _discarded(ws))):
        for commit, tree, parent, message in commits:
            parsed = parse_message(message, ws.tag)
            if parsed is None or parsed[0].id in found:
                continue
            exp, name = parsed
            found[exp.id] = replace(exp, commit=commit, parent=parent, diff={"tree": tree})
            counts[source] += 1
    # A baseline sits on the commit the tag started from; every candidate on an experiment.
    # `--max-experiments` counts candidates only, so the baseline must be known as one.
    ours = {e.commit for e in found.values()}
    records = [replace(e, proposer="baseline")
               if e.description == "baseline" and e.parent not in ours else e
               for _, e in sorted(found.items())]
    return records, counts[0], counts[1], name


def rebuild(ws: Workspace, task_file: Path | None, force: bool = False) -> Rebuilt:
    """Set the tag's ledger aside and write one rebuilt from commits, under a fresh key.

    Raises LedgerError if the ledger verifies (nothing to rebuild) unless `force`."""
    key_file = seal.key_path(ws.git_dir, ws.tag)
    meta_file = ws.state / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    old = Ledger(ws.state, str(meta.get("metric", "metric")), key_file)
    if not force:
        try:
            rows = old.read()
        except LedgerError:
            rows = []
        if rows:  # a ledger that verifies holds more than commits can give back
            raise LedgerError(f"{old.jsonl} verifies ({len(rows)} records); nothing was "
                              f"changed. `autoresearch rebuild --tag {ws.tag} --force` rebuilds "
                              "it anyway, losing what only the ledger holds (holdouts, logs).")
    old_pin = seal.read_pin(ws.state / seal.PIN_NAME, seal.read_key(key_file))
    records, kept, discarded, name = recover_records(ws)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = [p for p in (seal.set_aside(f, stamp) for f in (
        old.jsonl, old.tsv, ws.state / seal.PIN_NAME, key_file, seal.head_path(key_file)))
        if p is not None]
    ws.state.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(ws.state, str(meta.get("metric") or name or "metric"), key_file)
    ledger.write_all(records)
    key = seal.make_key(key_file)
    pin_file = ws.state / seal.PIN_NAME
    if old_pin is not None and old_pin.sealed:
        seal.write_pin(pin_file, key, old_pin.text.encode())
        pin = "the tag's pinned task file verified and stays pinned"
    elif task_file is not None and task_file.is_file():
        seal.write_pin(pin_file, key, task_file.read_bytes())
        pin = (f"{task_file.name} is pinned as it is now (the tag's earlier pin "
               f"{'did not verify' if old_pin else 'was missing'})")
    else:
        pin = ("no task file to pin: the next `run` needs --accept-task-change to pin the one "
               "it reads")
    ids = {e.id for e in records}
    missing = [i for i in range(max(ids) + 1) if i not in ids] if ids else []
    return Rebuilt(records, kept, discarded, missing, moved, pin)
