"""The keep protocol: how one candidate goes from its first run to keep or discard.

This is the one copy of the protocol. The loop's decision point, the decision
benchmark (`benchmarks/decisions.py`) and the tests all drive it; they differ
only in how a request is served (a sandboxed run on a worker slot, a draw from a
known distribution, a scripted value).

A protocol is a generator. It yields *requests* and receives their results:

1. ``Run("candidate", 0)``: the candidate's first run; the answer is a `Sample`.
   A failed run (status not ``ok``, ``pruned`` included) ends the protocol with
   that status.
2. After each sample, ``policy.judge(candidate, incumbent)``. ``rerun`` asks for
   more evidence, in one of two ways:
   - unpaired: ``Run("candidate", k)``, up to ``policy.max_samples()`` samples;
   - paired (``policy.pairing()``): pair ``k`` is ``Run("incumbent", k, seed)``
     and ``Run("candidate", k, seed)`` in the order ``paired.pair_order(k)``,
     both with the same fresh seed, then ``policy.judge_paired``; up to
     ``policy.max_pairs()`` pairs. The incumbent halves are re-measurements of
     the incumbent (`Outcome.incumbent_runs`).
   Past the limit a ``rerun`` is a discard.
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

from autoresearch.decisions.paired import Pair, pair_order
from autoresearch.decisions.policy import Candidate, Incumbent, Policy, Verdict

PAIR_SEED = 100  # pair k runs both halves with seed offset PAIR_SEED + k: fresh, shared


@dataclass(frozen=True)
class Run:
    """Request: run the candidate (or, in a pair, the incumbent) once; answer a `Sample`."""

    subject: str  # "candidate" | "incumbent"
    k: int  # the candidate's sample index, or the pair's index
    seed: int | None = None  # AUTORESEARCH_SEED offset; None: k (unpaired reruns)


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
    incumbent_runs: tuple[float, ...] = ()  # the incumbent halves of pairs


Request = Run | Checks
Protocol = Generator[Request, Any, Outcome]


def keep_protocol(policy: Policy, incumbent: Callable[[], Incumbent], lines_delta: int = 0,
                  diff: str = "", checks: bool = False) -> Protocol:
    """Drive one candidate to a decision; see the module docstring for the call order.

    `incumbent()` is called at every judgement, so re-measurements of the incumbent
    that land while the candidate runs count (always of the commit it was made on).
    """
    samples: list[float] = []
    pairs: list[Pair] = []
    last: Sample | None = None

    def failed(sample: Sample, what: str) -> Outcome:
        status = sample.status if sample.status != "ok" else "crash"
        return Outcome(Verdict(status, f"{what}: {sample.reason}" if what else sample.reason),
                       tuple(samples), sample, tuple(p.incumbent for p in pairs))

    last = yield Run("candidate", 0)
    assert isinstance(last, Sample)
    if last.status != "ok" or last.metric is None:
        return failed(last, "")
    samples.append(last.metric)
    verdict = policy.judge(Candidate(tuple(samples), last.metrics, lines_delta, diff),
                           incumbent())
    while verdict.status == "rerun":
        if policy.pairing():
            k = len(pairs)
            if k >= policy.max_pairs():
                break
            got: dict[str, Sample] = {}
            for subject in pair_order(k):
                answer = yield Run(subject, k, PAIR_SEED + k)
                assert isinstance(answer, Sample)
                if answer.status != "ok" or answer.metric is None:
                    if subject == "candidate":
                        return failed(answer, f"pair {k + 1}")
                    return Outcome(Verdict("discard", f"pair {k + 1}: the incumbent's run "
                                           f"failed ({answer.status}); not confirmed"),
                                   tuple(samples), last, tuple(p.incumbent for p in pairs))
                got[subject] = answer
            last = got["candidate"]
            assert last.metric is not None and got["incumbent"].metric is not None
            pairs.append(Pair(last.metric, got["incumbent"].metric, PAIR_SEED + k,
                              pair_order(k)[0] == "candidate"))
            samples.append(last.metric)
            verdict = policy.judge_paired(
                Candidate(tuple(samples), last.metrics, lines_delta, diff), incumbent(), pairs)
        else:
            if len(samples) >= policy.max_samples():
                break
            last = yield Run("candidate", len(samples))
            assert isinstance(last, Sample)
            if last.status != "ok" or last.metric is None:
                return failed(last, f"repeat {len(samples)}")
            samples.append(last.metric)
            verdict = policy.judge(Candidate(tuple(samples), last.metrics, lines_delta, diff),
                                   incumbent())
    if verdict.status == "rerun":
        runs = f"{len(pairs)} pairs" if pairs else f"{len(samples)} runs"
        verdict = replace(verdict, status="discard",
                          reason=f"not confirmed in {runs}; {verdict.reason}")
    if verdict.status == "keep" and checks:
        checked = yield Checks(verdict)
        assert isinstance(checked, Verdict)
        verdict = checked
    return Outcome(verdict, tuple(samples), last, tuple(p.incumbent for p in pairs))


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
