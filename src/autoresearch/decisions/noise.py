"""Noise statistics shared by the policies: the pooled sigma, Student-t, detectable effects.

``pairwise_sigma`` and ``NoisePool`` estimate the run-to-run noise from series of
repeated runs of one commit (see ``noise_aware`` for why pairs and a median).
``mde`` answers "how large must a true gain be to be kept?", which the loop
prints after the baseline and status shows: a policy that cannot see a 6% gain
should say so before the night starts, not after.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

# |x_i - x_j| of two N(mu, sigma^2) draws has median 0.6745 * sqrt(2) * sigma.
PAIR_SCALE = 1.4826 / math.sqrt(2.0)
NORMAL = statistics.NormalDist()
# Gaussian efficiency of the pairwise-median estimator relative to the standard
# deviation: it behaves like a standard deviation with this fraction of the dof.
SHAMOS_EFFICIENCY = 0.86
DEFAULT_POWER = 0.8


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
    source: str  # "pooled" | "floor" | "unknown" (| "prior" for paired differences)


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


def t_quantile(p: float, dof: float) -> float:
    """Student-t quantile by the Cornish-Fisher expansion (within ~1% for dof >= 3)."""
    z = NORMAL.inv_cdf(p)
    if math.isinf(dof):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3


def critical_z(z: float, noise: NoiseEstimate) -> float:
    """``z`` widened to a Student-t quantile for the estimate's degrees of freedom.

    A sigma from a handful of runs is often too small by chance, and then a plain
    ``z`` keeps noise. A sigma given by a floor or a prior is taken as known.
    """
    if noise.source not in ("pooled", "prior") or noise.dof <= 0:
        return z
    return t_quantile(NORMAL.cdf(z), SHAMOS_EFFICIENCY * noise.dof)


def confidence(effect: float, se: float | None) -> float | None:
    """``Phi(effect / se)``: the probability, under Gaussian noise, that the gain is real."""
    if se is None:
        return None
    if se <= 0:
        return 1.0 if effect > 0 else 0.0 if effect < 0 else 0.5
    return NORMAL.cdf(effect / se)


def in_se(effect: float, se: float) -> str:
    return f"{effect / se:+.2f} SE" if se > 0 else "noise-free"


def detectable(se: float, z: float, power: float = DEFAULT_POWER) -> float:
    """The true effect that clears ``z * se`` with probability ``power`` (Gaussian)."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return max(0.0, (z + NORMAL.inv_cdf(power)) * se)


def _z_of(z: float | None, conf: float | None) -> float:
    if (z is None) == (conf is None):
        raise ValueError("give exactly one of z and confidence")
    if conf is not None:
        if not 0.0 < conf < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {conf}")
        return NORMAL.inv_cdf(conf)
    assert z is not None
    return z


def mde(sigma: float, n_candidate: int, n_incumbent: int, z: float | None = None,
        confidence: float | None = None, power: float = DEFAULT_POWER) -> float:
    """Minimum detectable effect of comparing means of ``n_candidate`` and ``n_incumbent``
    runs with noise ``sigma``: the true gain kept with probability ``power`` by a one-sided
    test at critical value ``z`` (or at ``confidence``, i.e. ``z = Phi^-1(confidence)``)."""
    se = sigma * math.sqrt(1 / n_candidate + 1 / n_incumbent)
    return detectable(se, _z_of(z, confidence), power)


def paired_mde(sigma_diff: float, n_pairs: int, z: float | None = None,
               confidence: float | None = None, power: float = DEFAULT_POWER) -> float:
    """``mde`` for the mean of ``n_pairs`` paired differences whose sd is ``sigma_diff``."""
    return detectable(sigma_diff / math.sqrt(n_pairs), _z_of(z, confidence), power)


@dataclass(frozen=True)
class Sensitivity:
    """What a policy can see, known after the baseline: printed, and shown by status."""

    sigma: float | None  # noise of one run, metric units; None: not measured
    source: str  # where sigma came from: "pooled" | "floor" | "unknown"
    pairs: int  # within-series pairs behind sigma
    mde: float | None  # smallest true gain kept with probability `power`; None: unknown
    reference: float  # the incumbent's mean, for relative figures
    confidence: float | None  # one-sided confidence of the keep threshold (None: no test)
    power: float
    n_candidate: int  # runs (or pairs) of a fully confirmed candidate
    n_incumbent: int  # incumbent runs compared against (0 when paired)
    paired: bool

    def relative(self, value: float | None) -> float | None:
        if value is None or self.reference == 0:
            return None
        return value / abs(self.reference)

    def line(self, metric: str = "") -> str:
        """E.g. ``sigma = 0.0031 (0.31%) from 10 pairs of runs; smallest detectable gain =
        0.0058 (0.58%) at 96% confidence, 80% power, 6 runs vs 5``."""
        unit = f" {metric}" if metric else ""

        def fig(v: float | None) -> str:
            rel = self.relative(v)
            return f"{v:.4g}{unit}" + (f" ({rel:.2%})" if rel is not None else "")

        if self.sigma is None:
            return ("sigma = unknown (no repeated runs yet); smallest detectable gain = unknown")
        origin = f"from {self.pairs} pairs of runs" if self.source == "pooled" else \
            f"({self.source})"
        text = f"sigma = {fig(self.sigma)} {origin}"
        if self.mde is None or self.confidence is None:
            return text + "; no noise threshold: single-run deltas within sigma are chance"
        how = (f"up to {self.n_candidate} interleaved pairs" if self.paired else
               f"{self.n_candidate} runs vs {self.n_incumbent}")
        return (text + f"; smallest detectable gain = {fig(self.mde)} at "
                f"{self.confidence:.0%} confidence, {self.power:.0%} power, {how}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mde_relative": self.relative(self.mde),
                "sigma_relative": self.relative(self.sigma)}
