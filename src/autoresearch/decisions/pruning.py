"""Early stopping: end a run whose curve is clearly losing, or screen it at a fraction.

A run may print ``METRIC name=value progress=F`` (``metrics.parse_progress``).
The incumbent's finished runs leave curves; a candidate's partial curve is
compared with them at the same progress:

- **prune** (``prune = true``): after ``prune_min_progress`` of the budget, the
  run is stopped when its last ``PATIENCE`` points are all worse than the
  incumbent's mean curve by more than ``prune_z`` noise standard errors plus
  ``prune_margin`` (relative to the incumbent's value there). Two points, not
  one, so one spike of the loss does not end a run.
- **screen** (``screen = F``, 0 off): at the first point at or past ``F`` of
  the budget the run must be within noise (``prune_z`` standard errors, no
  margin) of the incumbent's curve, or it stops there. A run that passes goes
  on to the full budget in the same process, so screening costs nothing extra;
  the keep decision is made only on full-budget results.

The noise at progress ``p`` is pooled like the final metric's: within every
group of curves of one commit (the baseline's repeats, a candidate's reruns),
pairs of values interpolated at ``p`` give ``1.4826 median|a - b| / sqrt 2``;
``z`` is widened to Student-t for its degrees of freedom. The candidate's point
is one run against the mean of the incumbent's ``k`` curves, so the standard
error is ``sigma * sqrt(1 + 1/k)``. With no repeated curve the noise is unknown:
screening lets every run through, and pruning stops only on the margin alone
(a zero margin never stops).

Direction: the primary metric's, when the curve is the primary metric's; any
other curve (``train_loss``) is taken as lower-is-better.

A stopped run has no final metric: the loop records it as ``pruned``, a discard.

The defaults (``prune_z`` 2, ``prune_margin`` 0.01, ``prune_min_progress`` 0.3)
come from ``benchmarks/pruning.py``: in its simulation they stop 17-29% of
candidates, and at most 0.9% of the stopped runs are ones the full protocol
would have kept, even when curves cross by 5 sigma mid-run. The gain is modest
(1.04-1.07x experiments per hour) because only a candidate's first run is
watched and confirmations dominate the compute. Screening is off by default:
at ``screen = 0.25`` with that band, heavily crossing curves give 2.7% false
stops.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.decisions.noise import NoiseEstimate, critical_z, pairwise_sigma
from autoresearch.decisions.options import Option, above, between, nonneg
from autoresearch.metrics import Curve, ProgressPoint, parse_progress, progress_point

PATIENCE = 2  # consecutive losing points before a prune
READ_LIMIT = 4 * 2**20  # bytes of a running log read per should_stop call
LINE_LIMIT = 4096

PRUNE_OPTIONS: dict[str, Option] = {
    "prune": Option(bool, False, "stop a run whose progress curve is worse than the "
                    "incumbent's beyond noise (needs METRIC name=value progress=F lines)"),
    "prune_min_progress": Option(float, 0.3, "fraction of the budget a run completes before "
                                 "it can be pruned", between(0.0, 1.0)),
    "prune_margin": Option(float, 0.01, "relative margin beyond the noise band before a "
                           "prune, e.g. 0.01 = 1% of the incumbent's value", nonneg),
    "prune_z": Option(float, 2.0, "noise band of pruning and screening, in standard "
                      "errors", above(0)),
    "screen": Option(float, 0.0, "fraction of the budget at which a run must be within "
                     "noise of the incumbent's curve to go on (0: no screen)",
                     between(0.0, 0.95)),
}


@dataclass(frozen=True)
class PruneRule:
    prune: bool = False
    min_progress: float = 0.3
    margin: float = 0.01
    z: float = 2.0
    screen: float = 0.0
    patience: int = PATIENCE

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PruneRule:
        d = {k: options[k] for k in PRUNE_OPTIONS if k in options}
        return cls(prune=bool(d.get("prune", False)),
                   min_progress=float(d.get("prune_min_progress", 0.3)),
                   margin=float(d.get("prune_margin", 0.01)), z=float(d.get("prune_z", 2.0)),
                   screen=float(d.get("screen", 0.0)))

    @property
    def active(self) -> bool:
        return self.prune or self.screen > 0


@dataclass(frozen=True)
class PruneDecision:
    stop: bool
    rule: str  # "prune" | "screen" | "" (go on)
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


GO_ON = PruneDecision(False, "", "")


def curve_at(curve: Curve, p: float) -> float | None:
    """The curve's value at progress ``p``, linearly interpolated; None outside it."""
    if not curve or p < curve[0].progress or p > curve[-1].progress:
        return None
    i = bisect.bisect_left(curve, p, key=_progress)  # first point at or after p
    b = curve[i]
    if b.progress == p or i == 0:
        return b.value
    a = curve[i - 1]
    return a.value + (p - a.progress) / (b.progress - a.progress) * (b.value - a.value)


def _progress(point: ProgressPoint) -> float:
    return point.progress


@dataclass(frozen=True)
class Band:
    """The incumbent at one progress: its mean, the noise, and the run-vs-mean error."""

    mean: float
    curves: int
    sigma: float | None
    pairs: int
    z: float  # critical z, Student-t widened
    se: float | None  # sigma * sqrt(1 + 1/curves)


NoiseAt = Callable[[float], NoiseEstimate]


def pooled_noise(groups: Sequence[Sequence[Curve]]) -> NoiseAt:
    """The curve noise at a progress, pooled within each group of repeated curves."""
    def at(p: float) -> NoiseEstimate:
        values = [[v for c in g if (v := curve_at(c, p)) is not None] for g in groups]
        sigma, pairs = pairwise_sigma(values)
        dof = sum(max(0, len(v) - 1) for v in values)
        return NoiseEstimate(sigma, pairs, len(values), dof, "pooled")
    return at


def band(incumbent: Sequence[Curve], noise_at: NoiseAt, p: float, z: float) -> Band | None:
    values = [v for c in incumbent if (v := curve_at(c, p)) is not None]
    if not values:
        return None
    noise = noise_at(p)
    se = None if noise.sigma is None else noise.sigma * math.sqrt(1 + 1 / len(values))
    return Band(statistics.fmean(values), len(values), noise.sigma, noise.pairs,
                critical_z(z, noise), se)


def decide(rule: PruneRule, incumbent: Sequence[Curve], partial: Curve,
           noise_groups: Sequence[Sequence[Curve]] | None = None,
           direction: str = "minimize", noise_at: NoiseAt | None = None) -> PruneDecision:
    """Stop or go on, from the incumbent's finished curves and the candidate's partial one.

    Pure: the same inputs give the same answer, so the loop may call it after
    every new point. ``noise_groups`` (default: the incumbent's curves as one
    group) are the groups of repeated curves the noise is pooled from;
    ``noise_at`` may replace them with a (cached) function of the progress.
    """
    if not partial or not incumbent or not rule.active:
        return GO_ON
    if noise_at is None:
        noise_at = pooled_noise([incumbent] if noise_groups is None else noise_groups)
    sign = 1.0 if direction == "minimize" else -1.0

    def look(point: ProgressPoint, margin: float) -> tuple[bool, dict[str, Any]] | None:
        b = band(incumbent, noise_at, point.progress, rule.z)
        if b is None:
            return None
        gap = sign * (point.value - b.mean)  # positive: the candidate is worse
        slack = margin * abs(b.mean)
        if b.se is None:
            bound = slack if slack > 0 else math.inf
        else:
            bound = b.z * b.se + slack
        return gap > bound, {"progress": point.progress, "candidate": point.value,
                             "incumbent_mean": b.mean, "incumbent_curves": b.curves,
                             "gap": gap, "sigma": b.sigma, "noise_pairs": b.pairs,
                             "z": b.z, "bound": bound}

    if rule.screen > 0:
        at = next((pt for pt in partial if pt.progress >= rule.screen), None)
        seen = look(at, 0.0) if at is not None else None
        if seen is not None and seen[0]:
            ev = seen[1]
            return PruneDecision(True, "screen", _reason("screened out", ev), ev)
    if rule.prune:
        late = [pt for pt in partial if pt.progress >= rule.min_progress][-rule.patience:]
        if len(late) >= rule.patience:
            looks = [look(pt, rule.margin) for pt in late]
            if all(lk is not None and lk[0] for lk in looks):
                ev = looks[-1][1]  # type: ignore[index]
                return PruneDecision(True, "prune", _reason("pruned", ev), ev)
    return GO_ON


def _reason(what: str, ev: Mapping[str, Any]) -> str:
    noise = "noise unknown" if ev["sigma"] is None else f"sigma {ev['sigma']:.3g}"
    return (f"{what} at {ev['progress']:.0%} of the budget: {ev['candidate']:.6g} vs the "
            f"incumbent's {ev['incumbent_mean']:.6g} (mean of {ev['incumbent_curves']} "
            f"curve(s)), worse by {ev['gap']:.3g} > bound {ev['bound']:.3g} ({noise})")


class Pruner:
    """The curves of finished runs, by commit and metric, and the stop rule over them.

    Call ``observe`` with every full-budget run's curves (``observe_log`` reads them
    from its log); ``check`` a running candidate's partial curve against the
    incumbent commit's curves. ``watch`` gives the loop a ``should_stop`` callable.
    """

    def __init__(self, rule: PruneRule, primary: str = "", direction: str = "minimize",
                 limit: int = 64):
        self.rule, self.primary, self.direction, self.limit = rule, primary, direction, limit
        self._book: dict[str, dict[str, list[Curve]]] = {}  # metric -> commit -> curves
        self._noise: dict[tuple[str, float], NoiseEstimate] = {}  # until the next observe

    def observe(self, commit: str, curves: Mapping[str, Curve]) -> None:
        self._noise.clear()
        for name, curve in curves.items():
            if curve:
                by_commit = self._book.setdefault(name, {})
                by_commit.setdefault(commit, []).append(tuple(curve))
                while len(by_commit) > self.limit:  # oldest commits go first
                    del by_commit[next(iter(by_commit))]

    def observe_log(self, commit: str, log: Path) -> None:
        self.observe(commit, parse_progress(log.read_text(errors="replace")))

    def curves(self, commit: str, metric: str) -> tuple[Curve, ...]:
        return tuple(self._book.get(metric, {}).get(commit, ()))

    def metric_for(self, names: Sequence[str]) -> str | None:
        """The curve to follow: the primary metric's if reported, else the first seen."""
        if self.primary in names:
            return self.primary
        return names[0] if names else None

    def noise(self, metric: str, p: float) -> NoiseEstimate:
        """The pooled curve noise at progress ``p`` (cached: runs share progress marks)."""
        key = (metric, p)
        if key not in self._noise:
            groups = [g for g in self._book.get(metric, {}).values() if len(g) >= 2]
            self._noise[key] = pooled_noise(groups)(p)
        return self._noise[key]

    def check(self, incumbent: str, metric: str, partial: Curve) -> PruneDecision:
        direction = self.direction if metric == self.primary else "minimize"
        return decide(self.rule, self.curves(incumbent, metric), partial, None, direction,
                      lambda p: self.noise(metric, p))

    def watch(self, incumbent: str, log: Path) -> ProgressWatch:
        return ProgressWatch(self, incumbent, log)


class ProgressWatch:
    """``should_stop`` for ``measure()``: follows a running log's progress lines.

    Each call reads only the bytes added since the last call. After a stop,
    ``decision`` says why (the loop records the run as ``pruned`` with it).
    """

    def __init__(self, pruner: Pruner, incumbent: str, log: Path):
        self.pruner, self.incumbent, self.log = pruner, incumbent, log
        self._offset = 0
        self._rest = b""
        self.points: dict[str, list[ProgressPoint]] = {}
        self.decision: PruneDecision | None = None

    def _read(self) -> bool:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read(READ_LIMIT)  # a run that floods its log is read in steps
        except OSError:
            return False
        if not chunk:
            return False
        self._offset += len(chunk)
        *lines, rest = (self._rest + chunk).split(b"\n")
        self._rest = rest[-LINE_LIMIT:]  # a progress line is short; a huge one is not one
        new = False
        for raw in lines:
            found = progress_point(raw.decode("utf-8", errors="replace").split("\r")[-1])
            if found is not None:
                self.points.setdefault(found[0], []).append(found[1])
                new = True
        return new

    def should_stop(self) -> bool:
        if self.decision is not None:
            return True
        if not self._read():
            return False
        metric = self.pruner.metric_for(list(self.points))
        if metric is None:
            return False
        verdict = self.pruner.check(self.incumbent, metric, tuple(self.points[metric]))
        if verdict.stop:
            self.decision = PruneDecision(True, verdict.rule, verdict.reason,
                                          {**verdict.evidence, "metric": metric})
        return verdict.stop

    def __call__(self) -> bool:
        return self.should_stop()
