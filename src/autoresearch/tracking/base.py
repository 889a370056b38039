"""Experiment trackers and the hub that feeds them, off the loop's hot path.

Call order, for every tracker, all from the hub's one delivery thread:

1. ``open(setup)`` once, before anything else: connect, find or create the tag's parent
   run (found again after a resume, never duplicated).
2. ``started(event)`` when an experiment begins (optional to act on).
3. ``finished(record)`` once the experiment's ledger row is written, i.e. after the
   decision, so it carries status and reason. One tracker run per experiment id: a
   tracker must find a run it already made for the id (after SIGKILL and resume) rather
   than make a second.
4. ``close(rows)`` once at the end, with the ledger's rows (the parent run's summary).

A tracker raises on failure; the hub warns once per tracker and goes on. The loop only
queues events: `Hub.started`/`Hub.finished` never block, so a slow or broken tracker can
neither stop nor slow it.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment, Ledger
from autoresearch.workspace import git


@dataclass(frozen=True)
class Setup:
    tag: str
    metric: str
    direction: str
    state: Path  # .autoresearch/TAG: trackers keep their own files under state/tracking
    root: Path  # the repository
    config: dict[str, Any] = field(default_factory=dict)  # the task, for the parent run


@dataclass(frozen=True)
class Started:
    exp_id: int
    description: str
    parent: str
    worker: str


@dataclass(frozen=True)
class Record:
    """What a tracker logs for one finished experiment."""

    exp: Experiment
    params: dict[str, str]  # the description and the constants the change set
    metrics: dict[str, float]  # primary, secondaries, holdout (kept only)
    tags: dict[str, str]  # status, reason, experiment id, tag
    patch: str
    log: Path | None


class Tracker:
    """Base class: override what the tracker needs; see the module docstring for order."""

    name = "tracker"

    def open(self, setup: Setup) -> None:
        """Connect; find or create the tag's parent run."""

    def started(self, event: Started) -> None:
        """An experiment began."""

    def finished(self, record: Record) -> None:
        """Log one experiment's run (idempotent by experiment id)."""
        raise NotImplementedError

    def close(self, rows: list[Experiment]) -> None:
        """Summarize the tag on its parent run; release everything."""


_CONSTANT = re.compile(r"^\+\s*([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*(?:#.*)?$")


def changed_constants(patch: str) -> dict[str, str]:
    """UPPER_CASE assignments the patch adds: the knobs a change turned."""
    out = {}
    for line in patch.splitlines():
        m = _CONSTANT.match(line)
        if m and not line.startswith("+++"):
            out[m.group(1)] = m.group(2)[:250]
    return out


def make_record(exp: Experiment, setup: Setup) -> Record:
    patch = ""
    if exp.commit and exp.parent and exp.commit != exp.parent:
        patch = git("diff", "--no-color", exp.parent, exp.commit, cwd=setup.root, check=False)
    params = {"description": exp.description[:500], "proposer": exp.proposer}
    params.update({k: str(v) for k, v in (exp.proposal.get("params") or {}).items()})
    params.update(changed_constants(patch))
    metrics = {k: float(v) for k, v in exp.metrics.items() if isinstance(v, (int, float))}
    if exp.metric is not None:
        metrics[setup.metric] = exp.metric
    if exp.holdout is not None and exp.status == "keep":
        metrics[f"holdout_{setup.metric}"] = exp.holdout
    if exp.cost_usd:
        metrics["cost_usd"] = exp.cost_usd
    tags = {"autoresearch.tag": setup.tag, "autoresearch.exp_id": str(exp.id),
            "status": exp.status, "reason": exp.reason.strip()[:500]}
    log = Path(exp.log) if exp.log and Path(exp.log).is_file() else None
    return Record(exp, params, metrics, tags, patch, log)


class Hub:
    """Delivers the loop's events to trackers from one thread, in order.

    On start the thread opens each tracker, then catches up: every ledger row a tracker has
    not yet taken (the loop was killed before delivery) is delivered first. What each
    tracker took is appended to ``state/tracking/NAME.delivered``, so a resume neither
    skips nor repeats a row.
    """

    def __init__(self, trackers: list[Tracker], setup: Setup,
                 say: Callable[[str], None]):
        self.trackers, self.setup, self.say = trackers, setup, say
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._warned: set[str] = set()
        self._failed: set[str] = set()  # trackers whose open() failed: skipped from then on
        self._thread = threading.Thread(target=self._work, name="autoresearch-tracking",
                                        daemon=True)
        self._dir = setup.state / "tracking"
        self._closed = False

    # -- the loop's side: never blocks --------------------------------------------------
    def start(self) -> Hub:
        if self.trackers:
            self._thread.start()
        return self

    def started(self, exp_id: int, description: str, parent: str, worker: str = "") -> None:
        if self.trackers:
            self._queue.put(("started", Started(exp_id, description, parent, worker)))

    def finished(self, exp: Experiment) -> None:
        if self.trackers:
            self._queue.put(("finished", exp))

    def close(self) -> None:
        """Deliver what is queued, close the trackers, and return (at the loop's end)."""
        if self._closed or not self.trackers:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    # -- the delivery thread --------------------------------------------------------------
    def _warn(self, tracker: Tracker, what: str, exc: BaseException) -> None:
        if tracker.name not in self._warned:
            self._warned.add(tracker.name)
            self.say(f"warning: tracker {tracker.name} failed to {what} ({type(exc).__name__}: "
                     f"{exc}); the loop goes on, and this is not repeated. Rows it missed "
                     "are delivered on the next run of this tag.")

    def _delivered(self, tracker: Tracker) -> set[int]:
        path = self._dir / f"{tracker.name}.delivered"
        if not path.exists():
            return set()
        return {int(x) for x in path.read_text().split() if x.isdigit()}

    def _deliver(self, tracker: Tracker, exp: Experiment, done: set[int]) -> None:
        if exp.id in done or tracker.name in self._failed:
            return
        try:
            tracker.finished(make_record(exp, self.setup))
        except Exception as exc:  # noqa: BLE001 - any tracker failure is only a warning
            self._warn(tracker, f"log experiment {exp.id}", exc)
            return
        done.add(exp.id)
        with open(self._dir / f"{tracker.name}.delivered", "a") as fh:
            fh.write(f"{exp.id}\n")

    def _work(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        done: dict[str, set[int]] = {}
        for t in self.trackers:
            try:
                t.open(self.setup)
            except Exception as exc:  # noqa: BLE001
                self._warn(t, "start", exc)
                self._failed.add(t.name)
            done[t.name] = self._delivered(t)
        try:
            rows = Ledger(self.setup.state, self.setup.metric).read()
        except Exception as exc:  # noqa: BLE001 - a damaged ledger: the loop refuses it anyway
            self.say(f"warning: trackers could not read the ledger to catch up ({exc})")
            rows = []
        for e in rows:
            for t in self.trackers:
                self._deliver(t, e, done[t.name])
        while (item := self._queue.get()) is not None:
            kind, payload = item
            for t in self.trackers:
                if kind == "finished":
                    self._deliver(t, payload, done[t.name])
                elif t.name not in self._failed:
                    try:
                        t.started(payload)
                    except Exception as exc:  # noqa: BLE001
                        self._warn(t, "record a start", exc)
        try:
            rows = Ledger(self.setup.state, self.setup.metric).read()
        except Exception:  # noqa: BLE001
            rows = []
        for t in self.trackers:
            if t.name in self._failed:
                continue
            try:
                t.close(rows)
            except Exception as exc:  # noqa: BLE001
                self._warn(t, "close", exc)
