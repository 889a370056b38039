"""The noise-aware policy: keep only what clears the measured run-to-run noise.

Karpathy's rule keeps any run that beats the incumbent, and most of his kept
deltas were the size of the noise (one kept "idea" was a seed change). This
policy measures the noise and asks a candidate to clear it, confirmed by reruns.

**Noise estimate.** Every series of repeated runs of one commit (the baseline
repeats, the incumbent's re-measurements, a candidate's confirmation reruns) is
pooled. Within each series every pair of runs gives ``|x_i - x_j|``, which for
Gaussian noise is ``|N(0, 2 sigma^2)|``; the estimate is the MAD-style

    sigma = 1.4826 * median(|x_i - x_j|) / sqrt(2)

over all pairs of all series. Pairs rather than residuals from each series'
own median because the latter is ~30% low for series of two or three runs, and
an underestimated sigma is exactly what produces false keeps. The median makes
one wild run (a thermal hiccup) unable to move the estimate much. With no pair
at all (one baseline run, no reruns yet) the noise is unknown: the policy asks
for a rerun instead of guessing, unless ``noise_floor`` supplies a prior.
``noise_floor`` is also a lower bound: sigma = max(estimate, noise_floor).

The pool lives in the policy object, so it grows over a night: series judged
earlier keep informing later decisions. A series that extends an earlier one
(the same commit rerun, the incumbent re-measured) replaces it, so no run is
counted twice. A resumed loop starts with the incumbent's series only.

**Decision.** ``effect`` is the candidate mean minus the incumbent mean (the
mean over all its repeats, never its best draw), signed so positive is better;
``se = sigma * sqrt(1/n_candidate + 1/n_incumbent)``. The keep threshold is
``max(z' * se, min_delta)`` where ``z'`` is ``z`` widened twice: to a Student-t
quantile for the noise estimate's degrees of freedom (a sigma from five runs is
often low by chance), and, at an early look (fewer than ``max_samples`` runs),
by ``sqrt(max_samples / n)`` (an O'Brien-Fleming boundary: only a clear win is
kept early, so looking after every rerun does not multiply the false keeps).
Per judged sample:

1. seed-only diff -> discard; broken guardrail -> discard.
2. Fewer than ``1 + confirm_runs`` samples: rerun while ``effect > screen_z * se``
   (or, for a change that removes code, while it is within ``simplicity_z * se``
   of the incumbent); otherwise discard. With the default one confirmation, a
   single run is never enough to keep.
3. Then: ``effect > threshold`` keeps (an improvement), unless the change adds
   more than ``simplicity_lines`` code lines for less than ``simplicity_gain``
   (default: twice the threshold) -> discard. A change that removes code and is
   within ``simplicity_z * se`` of the incumbent is kept (a simplification).
   Otherwise rerun while ``effect > screen_z * se`` and under ``max_samples``;
   else discard.

The defaults (5 baseline runs, z 1.8, up to 6 runs, screen 0.25) are the
cheapest found by ``benchmarks/decisions.py`` that keep at most 5% of no-op
changes and at least 80% of true 2-sigma improvements.

``confidence`` in the evidence is ``Phi(effect / se)``: under the Gaussian noise
model, the probability that the candidate is truly better than the incumbent.

Options (``[decision]``; defaults in ``NoiseAwarePolicy.OPTIONS``): baseline_runs,
z, min_delta, confirm_runs, max_samples, screen_z, remeasure_every, noise_floor,
guardrails, simplicity_lines, simplicity_gain, simplicity_z, discard_seed_only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from autoresearch.decisions.policy import (
    GUARDRAILS_OPTION,
    Candidate,
    Incumbent,
    Option,
    Policy,
    Verdict,
    above,
    at_least,
    register_policy,
)
from autoresearch.decisions.simplicity import is_seed_only
from autoresearch.task import ConfigError, MetricSpec

# |x_i - x_j| of two N(mu, sigma^2) draws has median 0.6745 * sqrt(2) * sigma.
PAIR_SCALE = 1.4826 / math.sqrt(2.0)
_NORMAL = statistics.NormalDist()
# Gaussian efficiency of the pairwise-median estimator relative to the standard
# deviation: it behaves like a standard deviation with this fraction of the dof.
SHAMOS_EFFICIENCY = 0.86



def pairwise_sigma(series: Iterable[Sequence[float]]) -> tuple[float | None, int]:
    """Robust pooled noise sigma from within-series pairs, and the number of pairs used."""
    diffs = [abs(a - b) for s in series for a, b in combinations(s, 2)]
    if not diffs:
        return None, 0
    return statistics.median(diffs) * PAIR_SCALE, len(diffs)


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float | None  # None: unknown (no repeated runs and no floor)
    pairs: int  # within-series pairs behind the estimate
    series: int  # series with at least two runs
    dof: int  # degrees of freedom: runs minus series
    source: str  # "pooled" | "floor" | "unknown"


class NoisePool:
    """Series of repeated runs seen so far, each kept once at its longest."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._series: list[tuple[float, ...]] = []

    def observe(self, samples: Sequence[float]) -> None:
        new = tuple(float(x) for x in samples)
        if len(new) < 2:
            return
        for i, old in enumerate(self._series):
            if new[:len(old)] == old:  # the same commit, measured more: extend it
                self._series[i] = new
                return
            if old[:len(new)] == new:  # already known, at greater length
                return
        self._series.append(new)
        del self._series[:-self.limit]  # oldest go first; the noise is a property of the task

    def estimate(self, floor: float = 0.0) -> NoiseEstimate:
        sigma, pairs = pairwise_sigma(self._series)
        if sigma is None:
            return NoiseEstimate(floor if floor > 0 else None, 0, 0, 0,
                                 "floor" if floor > 0 else "unknown")
        dof = sum(len(s) - 1 for s in self._series)
        source = "floor" if floor > sigma else "pooled"
        return NoiseEstimate(max(sigma, floor), pairs, len(self._series), dof, source)


def _nonneg(v: Any) -> str | None:
    return None if v >= 0 else "must not be negative"


@register_policy
class NoiseAwarePolicy(Policy):
    """Keep only confirmed improvements that clear the measured noise (the default)."""

    name = "noise-aware"
    OPTIONS = {
        "baseline_runs": Option(int, 5, "runs of the unmodified baseline that seed the "
                                "noise estimate", at_least(1)),
        "z": Option(float, 1.8, "keep threshold in standard errors of the difference of "
                    "means", above(0)),
        "min_delta": Option(float, 0.0, "smallest improvement worth keeping, in metric "
                            "units", _nonneg),
        "confirm_runs": Option(int, 1, "reruns a candidate needs before it can be kept",
                               at_least(0)),
        "max_samples": Option(int, 6, "most runs of one candidate", at_least(1)),
        "screen_z": Option(float, 0.25, "a candidate is rerun only while its effect exceeds "
                           "this many standard errors"),
        "remeasure_every": Option(int, 5, "re-run the incumbent every N experiments without a "
                                  "keep (0: never)", _nonneg),
        "noise_floor": Option(float, 0.0, "prior and lower bound for the noise sigma, in "
                              "metric units", _nonneg),
        "guardrails": GUARDRAILS_OPTION,
        "simplicity_lines": Option(int, 20, "a change adding more code lines than this must "
                                   "gain at least simplicity_gain", _nonneg),
        "simplicity_gain": Option(float, -1.0, "gain that pays for more than simplicity_lines "
                                  "lines (default: twice the keep threshold)"),
        "simplicity_z": Option(float, 1.0, "a change that removes code is kept when no worse "
                               "than this many standard errors", _nonneg),
        "discard_seed_only": Option(bool, True, "discard a diff that only changes seeds"),
    }

    def __init__(self, metric: MetricSpec, options: Mapping[str, Any] | None = None):
        super().__init__(metric, options)
        o = self.options
        if o["max_samples"] < 1 + o["confirm_runs"]:
            raise ConfigError(f"decision.max_samples: must be at least 1 + confirm_runs = "
                              f"{1 + o['confirm_runs']}, got {o['max_samples']}.")
        if o["baseline_runs"] < 2 and o["max_samples"] < 2 and o["noise_floor"] <= 0:
            raise ConfigError("decision.baseline_runs: with one baseline run, max_samples 1 and "
                              "no noise_floor the noise can never be measured. Use "
                              "baseline_runs >= 2, or set noise_floor, or use policy = 'strict'.")
        self.pool = NoisePool()

    def baseline_runs(self) -> int:
        return int(self.options["baseline_runs"])

    def max_samples(self) -> int:
        return int(self.options["max_samples"])

    def remeasure_incumbent(self, experiments_since_keep: int) -> bool:
        every = int(self.options["remeasure_every"])
        return every > 0 and experiments_since_keep > 0 and experiments_since_keep % every == 0

    def critical_z(self, noise: NoiseEstimate) -> float:
        """``z`` widened to a Student-t quantile for the noise estimate's degrees of freedom.

        A sigma from a handful of runs is often too small by chance, and then a
        plain ``z`` keeps noise. A floor-given sigma is taken as known.
        """
        z = float(self.options["z"])
        if noise.source != "pooled" or noise.dof <= 0:
            return z
        return t_quantile(_NORMAL.cdf(z), SHAMOS_EFFICIENCY * noise.dof)

    def observe(self, samples: Sequence[float]) -> None:
        """Add a series of repeated runs of one commit to the noise pool (e.g. on resume)."""
        self.pool.observe(samples)

    def prescreen(self, diff: str) -> Verdict | None:
        if self.options["discard_seed_only"] and is_seed_only(diff):
            return Verdict("discard", _SEED_REASON, {"policy": self.name, "rule": "seed-only"})
        return None

    def judge(self, candidate: Candidate, incumbent: Incumbent) -> Verdict:
        o = self.options
        self.pool.observe(incumbent.samples)
        self.pool.observe(candidate.samples)
        noise = self.pool.estimate(o["noise_floor"])
        n_c, n_i = len(candidate.samples), len(incumbent.samples)
        mean_c, mean_i = statistics.fmean(candidate.samples), statistics.fmean(incumbent.samples)
        effect = self.improvement(mean_i, mean_c)
        se = None if noise.sigma is None else noise.sigma * math.sqrt(1 / n_c + 1 / n_i)
        z_eff = self.critical_z(noise)
        if n_c < o["max_samples"]:  # an early look: O'Brien-Fleming-style higher bar
            z_eff *= math.sqrt(o["max_samples"] / max(n_c, 1 + o["confirm_runs"]))
        threshold = None if se is None else max(z_eff * se, o["min_delta"])
        ev: dict[str, Any] = {
            "policy": self.name,
            "samples": list(candidate.samples), "incumbent_samples": list(incumbent.samples),
            "candidate_mean": mean_c, "incumbent_mean": mean_i, "effect": effect,
            "sigma": noise.sigma, "sigma_source": noise.source, "noise_pairs": noise.pairs,
            "se": se, "z": z_eff, "threshold": threshold, "confidence": _confidence(effect, se),
            "lines_delta": candidate.lines_delta,
        }
        if self.guardrails:
            ev["guardrails"] = [g.to_json(candidate.metrics, incumbent.baseline_metrics)
                                for g in self.guardrails]

        def verdict(status: str, rule: str, reason: str) -> Verdict:
            return Verdict(status, reason, {**ev, "rule": rule})

        if o["discard_seed_only"] and is_seed_only(candidate.diff):
            return verdict("discard", "seed-only", _SEED_REASON)
        broken = self.broken_guardrails(candidate, incumbent)
        if broken:
            return verdict("discard", "guardrail", "; ".join(broken))

        more = n_c < o["max_samples"]
        if se is None or threshold is None:  # no repeated run yet: measure the noise first
            if more and effect > 0:
                return verdict("rerun", "measure-noise", f"looks better by {effect:.6g} but the "
                               "noise is unknown; rerunning to measure it")
            return verdict("discard", "no-evidence", f"effect {effect:+.6g} with unknown noise")

        stats = (f"effect {effect:+.6g}, {_in_se(effect, se)} (sigma {noise.sigma:.3g} from "
                 f"{noise.pairs} pairs), {n_c} run(s) vs incumbent mean of {n_i}, "
                 f"confidence {_confidence(effect, se):.0%}")
        removes = candidate.lines_delta < 0
        within = effect >= -o["simplicity_z"] * se  # no worse than the noise allows
        promising = effect > o["screen_z"] * se

        if n_c < 1 + o["confirm_runs"]:
            if promising or (removes and within):
                return verdict("rerun", "confirm", f"promising, confirming: {stats}")
            return verdict("discard", "screen", f"no better than the incumbent: {stats}")

        if effect > threshold:
            needed = o["simplicity_gain"] if o["simplicity_gain"] >= 0 else 2 * threshold
            if candidate.lines_delta > o["simplicity_lines"] and effect < needed:
                return verdict("discard", "complexity",
                               f"gain {effect:.6g} does not pay for +{candidate.lines_delta} "
                               f"lines (needs {needed:.6g} above {o['simplicity_lines']} "
                               f"lines): {stats}")
            return verdict("keep", "improvement",
                           f"better beyond noise (threshold {threshold:.6g}): {stats}")
        if removes and within:
            return verdict("keep", "simplification",
                           f"simplification: removes {-candidate.lines_delta} lines, within "
                           f"noise: {stats}")
        if more and promising:
            return verdict("rerun", "confirm", f"promising but below threshold "
                           f"{threshold:.6g}, rerunning: {stats}")
        return verdict("discard", "within-noise" if effect > -threshold else "worse",
                       f"not better beyond noise (threshold {threshold:.6g}): {stats}")


_SEED_REASON = ("seed-only change: the diff only changes a seed, which draws different "
                "noise rather than testing an idea")


def t_quantile(p: float, dof: float) -> float:
    """Student-t quantile by the Cornish-Fisher expansion (within ~1% for dof >= 3)."""
    z = _NORMAL.inv_cdf(p)
    if math.isinf(dof):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3


def _confidence(effect: float, se: float | None) -> float | None:
    if se is None:
        return None
    if se <= 0:
        return 1.0 if effect > 0 else 0.0 if effect < 0 else 0.5
    return _NORMAL.cdf(effect / se)


def _in_se(effect: float, se: float) -> str:
    return f"{effect / se:+.2f} SE" if se > 0 else "noise-free"
