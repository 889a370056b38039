"""Nights with N workers, for `benchmarks/decisions.py`: does parallelism cost decision quality?

The same keep protocol (``decisions.protocol.keep_protocol``) the loop's decision
point drives, with several candidates in flight at once on N simulated workers:
each run takes 1 time unit (+-10%), proposals are made ahead on the incumbent of
their time (one per worker, as the loop's default), and every request of every
protocol waits for a free worker. The decision point's stale rule is modelled:
a keep decided on an incumbent that has moved since is merged (its true effect
added to the new incumbent) and run again through a fresh protocol. Git, the
sandbox and the executor are not simulated; the decisions are the real ones.

Reported per worker count, over nights of a fixed number of experiments: keeps of
no-op changes, keeps of 2-sigma gains, and the true metric the night ends on
(too much parallelism starves the feedback loop: proposals made on stale
incumbents, decisions waiting on each other).
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoresearch.decisions.policy import Incumbent, Policy
from autoresearch.decisions.protocol import Outcome, Protocol, Run, Sample, keep_protocol

BASE = 1.0
# (probability, effect in sigma): no-op, a clear gain, harm.
MIX = ((0.4, lambda r: 0.0), (0.2, lambda r: 2.0), (0.4, lambda r: -float(r.exponential(2.0))))


@dataclass
class InFlight:
    effect: float
    parent: int  # the incumbent's version when proposed
    true: float  # the candidate's true metric
    protocol: Protocol
    inc_samples: list[float] = field(default_factory=list)


def night(make_policy: Callable[[], Policy], measure: Callable[[float], float],
          rng: np.random.Generator, sigma: float, workers: int,
          experiments: int) -> dict[str, Any]:
    policy = make_policy()
    inc = {"version": 0, "true": BASE,
           "samples": [measure(BASE) for _ in range(policy.baseline_runs())]}
    counter = itertools.count()
    events: list[tuple[float, int, InFlight, Run]] = []  # (finish time, tie, owner, request)
    waiting: list[tuple[InFlight, Run]] = []
    decided: list[tuple[float, str]] = []
    now, busy, started = 0.0, 0, 0

    def draw() -> float:
        u, acc = rng.random(), 0.0
        for p, effect in MIX:
            acc += p
            if u < acc:
                return effect(rng)
        return 0.0

    def start(effect: float, parent: int, true: float) -> None:
        samples = list(inc["samples"])
        f = InFlight(effect, parent, true, keep_protocol(
            policy, lambda: Incumbent(tuple(samples), {}, {})), samples)
        waiting.append((f, next(f.protocol)))

    def conclude(f: InFlight, out: Outcome) -> None:
        if out.verdict.status == "keep" and f.parent != inc["version"]:  # stale: rerun
            start(f.effect, inc["version"], inc["true"] - f.effect * sigma)
            return
        decided.append((f.effect, out.verdict.status))
        if out.verdict.status == "keep":
            inc.update(version=inc["version"] + 1, true=f.true, samples=list(out.samples))
        else:
            inc["samples"] += list(out.incumbent_runs)

    while len(decided) < experiments:
        in_flight = len(events) + len(waiting)
        while started < experiments and in_flight < 2 * workers:  # one ready per worker
            effect = draw()
            start(effect, inc["version"], inc["true"] - effect * sigma)
            started, in_flight = started + 1, in_flight + 1
        while busy < workers and waiting:
            f, req = waiting.pop(0)
            heapq.heappush(events, (now + float(rng.uniform(0.9, 1.1)), next(counter), f, req))
            busy += 1
        if not events:
            break
        now, _, f, req = heapq.heappop(events)
        busy -= 1
        true = f.true if req.subject == "candidate" else inc["true"]
        try:
            waiting.insert(0, (f, f.protocol.send(Sample("ok", "", measure(true), {}))))
        except StopIteration as stop:
            conclude(f, stop.value)
    return {"decided": decided, "true": inc["true"], "hours": now}


def rates(nights: list[dict[str, Any]], sigma: float) -> dict[str, float]:
    noop = [s for n in nights for e, s in n["decided"] if e == 0.0]
    gain = [s for n in nights for e, s in n["decided"] if e == 2.0]
    return {"false_keep": sum(s == "keep" for s in noop) / max(1, len(noop)),
            "detect_2": sum(s == "keep" for s in gain) / max(1, len(gain)),
            "true_gain": statistics.fmean((BASE - n["true"]) / sigma for n in nights),
            "time": statistics.fmean(n["hours"] for n in nights)}
