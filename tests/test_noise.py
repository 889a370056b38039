"""Robust noise statistics, and the noise-aware policy's error rates on a simulated loop."""

from __future__ import annotations

import random
import statistics

import pytest

from autoresearch.decisions.noise_aware import (
    NoiseAwarePolicy,
    NoisePool,
    pairwise_sigma,
    t_quantile,
)
from autoresearch.decisions.policy import Candidate, Incumbent
from autoresearch.task import MetricSpec


def test_pairwise_sigma_is_consistent_and_robust():
    rng = random.Random(0)
    series = [[rng.gauss(0, 2.0) for _ in range(4)] for _ in range(400)]
    sigma, pairs = pairwise_sigma(series)
    assert pairs == 400 * 6 and sigma == pytest.approx(2.0, rel=0.07)
    # One wild run barely moves it; the standard deviation would double.
    tame = [[1.0, 1.1, 0.9, 1.05, 0.95]]
    wild = [[1.0, 1.1, 0.9, 1.05, 9.0]]
    assert pairwise_sigma(wild)[0] < 2.5 * (pairwise_sigma(tame)[0] or 0)
    assert pairwise_sigma([[1.0], []]) == (None, 0)


def test_pool_counts_each_series_once_at_its_longest():
    pool = NoisePool()
    pool.observe([1.0, 2.0])
    pool.observe([1.0, 2.0, 3.0])  # the same commit rerun
    pool.observe([1.0, 2.0])  # seen again (e.g. judged again)
    pool.observe([5.0])  # one run: no pair
    est = pool.estimate()
    assert (est.pairs, est.series, est.dof, est.source) == (3, 1, 2, "pooled")
    assert NoisePool().estimate().source == "unknown"
    assert NoisePool().estimate(floor=0.5).sigma == 0.5


def test_t_quantile():
    assert t_quantile(0.975, 4) == pytest.approx(2.776, rel=0.01)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, rel=0.01)
    assert t_quantile(0.95, float("inf")) == pytest.approx(1.645, rel=0.001)


def simulate(effect_sigmas: float, trials: int, seed: int) -> float:
    """Keep rate of one candidate after the baseline, with the loop's rerun protocol."""
    rng = random.Random(seed)
    keeps = 0
    for _ in range(trials):
        policy = NoiseAwarePolicy(MetricSpec("loss", "minimize"))
        incumbent = Incumbent(tuple(rng.gauss(1.0, 0.01) for _ in range(policy.baseline_runs())),
                              {}, {})
        samples = [rng.gauss(1.0 - 0.01 * effect_sigmas, 0.01)]
        while (v := policy.judge(Candidate(tuple(samples), {}), incumbent)).status == "rerun":
            assert len(samples) < policy.max_samples()
            samples.append(rng.gauss(1.0 - 0.01 * effect_sigmas, 0.01))
        keeps += v.status == "keep"
    return keeps / trials


def test_false_keeps_are_rare_and_real_gains_are_found():
    assert simulate(0.0, 600, seed=1) < 0.08  # about 4.5% expected; strict keeps ~50%
    assert simulate(4.0, 200, seed=2) > 0.95


def test_series_mean_is_used():
    p = NoiseAwarePolicy(MetricSpec("loss", "minimize"))
    v = p.judge(Candidate((0.9, 0.92), {}), Incumbent((1.0, 0.8, 1.2, 1.0, 1.0), {}, {}))
    assert v.evidence["incumbent_mean"] == pytest.approx(statistics.fmean([1.0, 0.8, 1.2, 1, 1]))
