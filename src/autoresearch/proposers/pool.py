"""The proposer pool: what to try next, prepared while experiments run.

The pool owns one proposer and a bounded backlog of finished proposals. The
decision point says how many it wants (`want`), takes them (`take`), and the
pool's thread calls `proposer.propose` until the backlog holds that many. Each
`Ticket` records the incumbent it was made on, so the decision point can tell a
proposal made on an older incumbent and rebase it.

With `background=False` the pool proposes on the caller's thread, only when a
proposal is taken: the strict propose -> run -> decide sequence (used without
the sandbox, where the tripwires that stand in for it must not see concurrent
work).

Cancelling (`cancel`) stops a proposer's subprocess at once (its phase runner's
stop event) and drops what it was making; nothing was run, so nothing is recorded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.ledger import Experiment
from autoresearch.proposers.base import (
    Context,
    Proposal,
    Proposer,
    ProposerError,
    safe_propose,
)


@dataclass(frozen=True)
class Ticket:
    exp_id: int
    parent: str  # the incumbent commit the proposal was made on
    workdir: Path  # the export the proposer edited
    proposal: Proposal
    started: float  # wall clock when proposing began
    seconds: float  # how long the proposer took
    fatal: ProposerError | None = None  # the proposer cannot go on: the run stops with this
    rerun_of: int | None = None  # an interrupted experiment the harness runs again


class ProposerPool:
    def __init__(self, proposer: Proposer, make_context: Callable[[int, str, Path], Context],
                 next_id: Callable[[], int], tip: Callable[[], str],
                 export: Callable[[str, Path], Path], scratch: Path,
                 background: bool = True):
        self.proposer = proposer
        self._context, self._next_id, self._tip = make_context, next_id, tip
        self._export, self._scratch = export, scratch
        self.background = background
        self._ready: deque[Ticket] = deque()
        self._outcomes: deque[Experiment] = deque()  # told to the proposer on its own thread
        self._wanted = 0
        self._cond = threading.Condition()
        self._closed = False
        self.cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the decision point's side ------------------------------------------------
    def want(self, n: int) -> None:
        """Keep `n` proposals ready (or being made)."""
        with self._cond:
            self._wanted = n
            self._cond.notify_all()
        if self.background and self._thread is None and n > 0:
            self._thread = threading.Thread(target=self._work, daemon=True,
                                            name="autoresearch-proposer")
            self._thread.start()

    def backlog(self) -> int:
        with self._cond:
            return len(self._ready)

    def take(self, timeout: float) -> Ticket | None:
        """A ready proposal, waiting up to `timeout` seconds for one (background pool), or
        made now on this thread (foreground pool)."""
        if not self.background:
            return None if self.cancelled.is_set() else self._make()
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout)
            return self._ready.popleft() if self._ready else None

    def observe(self, exp: Experiment) -> None:
        """Queue an outcome for the proposer; it hears it before its next proposal, on the
        thread that proposes (proposers need not be thread-safe)."""
        with self._cond:
            self._outcomes.append(exp)

    def _tell(self) -> None:
        while True:
            with self._cond:
                if not self._outcomes:
                    return
                exp = self._outcomes.popleft()
            self.proposer.observe(exp)

    def cancel(self) -> None:
        """Stop proposing now: a proposer subprocess is killed, a pending answer dropped."""
        self.cancelled.set()
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def join(self, seconds: float = 10.0) -> None:
        """Wait for a cancelled proposal to unwind, so its subprocess is gone before the
        harness exits. (The proposer's own call is not interruptible: an HTTP request in
        flight is abandoned after `seconds`, the thread being a daemon.)"""
        if self._thread is not None:
            self._thread.join(seconds)

    # -- the pool's thread ----------------------------------------------------------
    def _make(self) -> Ticket:
        self._tell()
        exp_id = self._next_id()
        parent = self._tip()
        workdir = self._export(parent, self._scratch / f"propose-{exp_id}")
        started = time.time()
        t0 = time.monotonic()
        fatal = None
        try:  # any other surprise is a failed proposal, not a dead night
            proposal = safe_propose(self.proposer, self._context(exp_id, parent, workdir))
        except ProposerError as exc:
            proposal, fatal = Proposal(description="", error=str(exc)), exc
        return Ticket(exp_id, parent, workdir, proposal, started, time.monotonic() - t0, fatal)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) >= self._wanted:
                    self._cond.wait()
                if self._closed:
                    return
            ticket = self._make()
            with self._cond:
                if self.cancelled.is_set() or self._closed:
                    return
                self._ready.append(ticket)
                self._cond.notify_all()
                if ticket.fatal is not None:  # the decision point stops the run with it
                    return
