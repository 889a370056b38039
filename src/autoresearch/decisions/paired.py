"""Paired, interleaved confirmation: judge a candidate by its differences from the incumbent.

On a shared machine the metric drifts (load, thermals, other jobs) on a time
scale of minutes, so a candidate confirmed an hour after the incumbent was
measured is compared with a different machine. Running candidate and
incumbent back to back, with the same seed, and judging the *differences*
cancels both the drift and (where the seed drives the noise) the seed's share.
This is how a 6% gain invisible to unpaired repeats was seen by hand.

The order alternates (``pair_order``: incumbent first, then candidate first, ...)
so a trend within a pair cancels over two pairs as well.

The noise of a difference is pooled across candidates like the run noise: each
candidate's series of differences is one series in a ``NoisePool``. Its prior is
``sqrt(2)`` times the run sigma (the difference of two independent runs), which
only over-states the noise when drift or seeds made runs correlated; the two
are combined weighted by their degrees of freedom (``PairedNoise.estimate``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoresearch.decisions.noise import NoiseEstimate, NoisePool

# The run-noise prior counts as at most this many degrees of freedom (a baseline of five):
# a long incumbent series spans the machine's drift, which differences do not carry, so
# the prior must not outweigh the differences' own evidence for long.
PRIOR_DOF = 4


@dataclass(frozen=True)
class Pair:
    """One interleaved pair: the candidate and the incumbent run with the same seed."""

    candidate: float
    incumbent: float
    seed: int | None = None
    candidate_first: bool = False


def pair_order(k: int) -> tuple[str, str]:
    """Which runs first in pair ``k`` (0-based): alternating, so drift within pairs cancels."""
    return ("incumbent", "candidate") if k % 2 == 0 else ("candidate", "incumbent")


@dataclass(frozen=True)
class PairedStats:
    n: int  # pairs
    differences: tuple[float, ...]  # improvement per pair, positive = candidate better
    mean: float
    sd: float | None  # sample sd of these differences (None for one pair)
    noise: NoiseEstimate  # the sd of a difference used for the test, and its origin
    se: float | None  # noise.sigma / sqrt(n)


class PairedNoise:
    """Pooled noise of paired differences, with the run noise as a prior."""

    def __init__(self) -> None:
        self.pool = NoisePool()

    def observe(self, differences: Sequence[float]) -> None:
        self.pool.observe(differences)

    def estimate(self, run_noise: NoiseEstimate) -> NoiseEstimate:
        """The differences' own pooled sd, combined with the ``sqrt(2)`` run-sigma prior.

        Variances are averaged weighted by degrees of freedom (the prior's capped at
        ``PRIOR_DOF``), so the first few pairs refine the prior instead of replacing it
        with a guess from two numbers, later ones outweigh it, and the estimate's dof
        keep the Student-t widening honest.
        """
        own = self.pool.estimate()
        if run_noise.sigma is None:
            return own
        prior = math.sqrt(2.0) * run_noise.sigma
        prior_dof = min(run_noise.dof, PRIOR_DOF) if run_noise.source == "pooled" else 0
        if own.sigma is None or own.dof == 0:
            return NoiseEstimate(prior, run_noise.pairs, run_noise.series, prior_dof,
                                 "prior" if prior_dof else run_noise.source)
        if prior_dof == 0:  # a floor: a lower bound, not evidence
            return NoiseEstimate(max(own.sigma, prior), own.pairs, own.series, own.dof,
                                 "pooled" if own.sigma >= prior else run_noise.source)
        dof = own.dof + prior_dof
        sigma = math.sqrt((own.dof * own.sigma ** 2 + prior_dof * prior ** 2) / dof)
        return NoiseEstimate(sigma, own.pairs, own.series, dof, "pooled")


def paired_stats(pairs: Sequence[Pair], improvement: Callable[[float, float], float],
                 noise: PairedNoise, run_noise: NoiseEstimate) -> PairedStats:
    """Observe this candidate's differences in ``noise`` and summarise them.

    ``improvement(incumbent, candidate)`` is the policy's signed gain.
    """
    diffs = tuple(improvement(p.incumbent, p.candidate) for p in pairs)
    noise.observe(diffs)
    est = noise.estimate(run_noise)
    n = len(diffs)
    sd = statistics.stdev(diffs) if n >= 2 else None
    se = None if est.sigma is None else est.sigma / math.sqrt(n)
    return PairedStats(n, diffs, statistics.fmean(diffs), sd, est, se)
