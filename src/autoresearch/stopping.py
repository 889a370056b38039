"""When a night stops, and what a stop leaves behind.

`stop_reason` is checked before anything new starts; once it answers, the loop
proposes nothing more and lets what runs finish. `drop_unstarted` records what was
admitted ahead but never ran (`interrupted`, its change preserved) so that the next
start runs it first. Signals are the loop's: it passes what they decided.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.ledger import FAILURES, Experiment

if TYPE_CHECKING:
    from autoresearch.decisions.point import DecisionPoint
    from autoresearch.loop import LoopOptions

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def candidates(rows: Sequence[Experiment]) -> list[Experiment]:
    """The proposals among the rows (not the baseline, not the harness's re-measures)."""
    return [e for e in rows if e.proposer not in ("baseline", "harness")]


def stop_reason(rows: Sequence[Experiment], in_flight_cost: float, o: LoopOptions,
                started: float, logs: Path) -> str | None:
    """Why no new experiment may start (a limit was reached), or None."""
    done = candidates(rows)
    if o.max_experiments is not None and len(done) >= o.max_experiments:
        return f"reached --max-experiments {o.max_experiments}"
    if o.hours is not None and time.monotonic() - started >= o.hours * 3600:
        return f"reached --hours {o.hours}"
    spent = sum(e.cost_usd for e in rows) + in_flight_cost
    if o.max_cost is not None and spent >= o.max_cost:
        return f"reached --max-cost ${o.max_cost:.2f}"
    streak = 0
    for e in reversed(done):
        if e.status not in (*FAILURES, "duplicate"):
            break
        streak += 1
    if streak >= o.max_failures:
        return (f"{streak} failed experiments in a row (--max-failures {o.max_failures}); "
                f"read the last logs in {logs}")
    return None


def room(rows: Sequence[Experiment], running: int, o: LoopOptions) -> int:
    """How many more candidates may start under --max-experiments."""
    if o.max_experiments is None:
        return 1 << 30
    return o.max_experiments - len(candidates(rows)) - running


def drop_unstarted(point: DecisionPoint, started: set[int], aborted: bool) -> None:
    """Record candidates admitted ahead whose first run has not begun as `interrupted`
    (the next start runs them first). After an abort, also every candidate with no job
    running: their follow-ups will never run."""
    for job in list(point.queue):
        cand = point.active.get(job.exp_id)
        if cand is None or job.exp_id in started or cand.remeasure:
            continue
        if job.kind == "measure" and job.sample == 0 and not cand.base.evidence.get("jobs"):
            point.queue.remove(job)
            point.active.pop(job.exp_id)
            point.finish(replace(cand.base, status="interrupted", reason=(
                "stopped before it ran; it runs first on the next start")), cand.tree)
    if not aborted:
        return
    for job in list(point.queue):
        if job.exp_id not in started:
            point.queue.remove(job)
    for cand in list(point.active.values()):
        if cand.base.id not in started and all(c is not cand for c in point.concluded):
            point.active.pop(cand.base.id)
            point.finish(replace(cand.base, status="interrupted",
                                 reason="aborted before it finished"), cand.tree)
