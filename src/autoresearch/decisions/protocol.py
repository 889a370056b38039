"""The keep protocol: how one candidate goes from its first run to keep or discard.

This is the one copy of the protocol. The loop's decision point, the decision
benchmark (`benchmarks/decisions.py`) and the tests all drive it; they differ
only in how a request is served (a sandboxed run on a worker slot, a draw from a
known distribution, a scripted value).

A protocol is a generator. It yields *requests* and receives their results:

1. ``Run("candidate", k)``: run the candidate once more (its sample ``k``); the
   answer is a `Sample`. A failed run (status not ``ok``) ends the protocol with
   that status.
2. After each sample, ``policy.judge(candidate, incumbent)``. ``rerun`` asks for
   another sample, up to ``policy.max_samples()``; past that it is a discard.
3. On ``keep``, when the task has checks, ``Checks()``; its answer is a
   `Verdict` that either passes the keep through or replaces it
   (``checks_failed``, ``invalid``, ``interrupted``).

The generator returns an `Outcome`. It never touches the ledger, the branch or the
policy's state beyond ``judge``: the caller owns those, and serialises every call
into the protocol (the policy object is not thread-safe, and need not be).

Not covered here: the baseline (repeated runs of one commit, no judging), the
incumbent's re-measurement (`remeasure_due`), what happens when the incumbent
moved while a candidate ran (the decision point's stale rule), and the holdout
score (the decision point asks for it after a keep, for humans only).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autoresearch.decisions.policy import Candidate, Incumbent, Policy, Verdict


@dataclass(frozen=True)
class Run:
    """Request: run the candidate (sample `k`, seeded seed + k) and report a `Sample`."""

    subject: str  # "candidate"
    k: int


@dataclass(frozen=True)
class Checks:
    """Request: run the task's checks on the candidate; answer with a `Verdict`."""

    verdict: Verdict  # the keep the checks would confirm


@dataclass(frozen=True)
class Sample:
    """One measured run, as the protocol needs it."""

    status: str  # "ok" or a failure status ("crash", "timeout", "invalid", "interrupted")
    reason: str = ""
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict  # keep, discard or a failure status; never rerun
    samples: tuple[float, ...]  # the candidate's metric values, one per ok run
    last: Sample | None  # the latest run (its secondary metrics go in the row)


Request = Run | Checks
Protocol = Generator[Request, Any, Outcome]


def keep_protocol(policy: Policy, incumbent: Callable[[], Incumbent], lines_delta: int = 0,
                  diff: str = "", checks: bool = False) -> Protocol:
    """Drive one candidate to a decision; see the module docstring for the call order.

    `incumbent()` is called at every judgement, so re-measurements of the incumbent
    that land while the candidate runs count (always of the commit it was made on).
    """
    samples: list[float] = []
    last: Sample | None = None
    verdict = Verdict("discard", "")
    while True:
        last = yield Run("candidate", len(samples))
        assert isinstance(last, Sample)
        if last.status != "ok" or last.metric is None:
            status = last.status if last.status != "ok" else "crash"
            why = last.reason if not samples else f"repeat {len(samples)}: {last.reason}"
            return Outcome(Verdict(status, why), tuple(samples), last)
        samples.append(last.metric)
        cand = Candidate(tuple(samples), last.metrics, lines_delta, diff)
        verdict = policy.judge(cand, incumbent())
        if verdict.status != "rerun":
            break
        if len(samples) >= policy.max_samples():
            verdict = replace(verdict, status="discard",
                              reason=f"not confirmed in {len(samples)} runs; {verdict.reason}")
            break
    if verdict.status == "keep" and checks:
        checked = yield Checks(verdict)
        assert isinstance(checked, Verdict)
        verdict = checked
    return Outcome(verdict, tuple(samples), last)


def drive(protocol: Protocol, serve: Callable[[Request], Any]) -> Outcome:
    """Run a protocol to its outcome, serving each request at once (in sequence)."""
    try:
        request = next(protocol)
        while True:
            request = protocol.send(serve(request))
    except StopIteration as done:
        return done.value


def remeasure_due(policy: Policy, judged_since_keep: int) -> bool:
    """Whether the incumbent should be run again now (drift tracking), per the policy."""
    return policy.remeasure_incumbent(judged_since_keep)


def judged_since_keep(statuses: Sequence[tuple[str, bool]]) -> int:
    """Experiments judged on a metric since the last keep, from (status, judged) rows in
    ledger order; harness rows (re-measures) are passed with judged False."""
    since = 0
    for status, judged in reversed(statuses):
        if status == "keep":
            break
        since += judged
    return since
