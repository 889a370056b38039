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


# --- minimum detectable effect --------------------------------------------------------------

def test_mde_formula_and_its_two_spellings():
    from autoresearch.decisions.noise import mde, paired_mde
    # One-sided 5% test, 80% power, one run against one: (1.645 + 0.842) * sqrt(2) sigma.
    assert mde(1.0, 1, 1, z=1.6449) == pytest.approx(3.517, rel=0.001)
    assert mde(2.0, 6, 5, confidence=0.95) == pytest.approx(
        2 * (1.6449 + 0.8416) * (1 / 6 + 1 / 5) ** 0.5, rel=0.001)
    assert mde(1.0, 4, 4, z=1.8, power=0.9) > mde(1.0, 4, 4, z=1.8)
    assert paired_mde(2 ** 0.5, 1, z=1.6449) == pytest.approx(mde(1.0, 1, 1, z=1.6449))
    with pytest.raises(ValueError, match="exactly one"):
        mde(1.0, 1, 1)
    with pytest.raises(ValueError, match="exactly one"):
        mde(1.0, 1, 1, z=1.0, confidence=0.9)
    with pytest.raises(ValueError, match="power"):
        mde(1.0, 1, 1, z=1.0, power=1.0)


def test_sensitivity_after_the_baseline_is_printable_and_stored():
    base = Incumbent((1.00, 1.01, 0.99, 1.005, 0.995), {}, {})
    plain = NoiseAwarePolicy(MetricSpec("loss", "minimize"), {"pairing": False})
    s = plain.sensitivity(base)
    assert s.sigma is not None and s.mde is not None and s.mde > 2 * s.sigma
    assert (s.n_candidate, s.n_incumbent, s.paired) == (6, 5, False)
    line = s.line("loss")
    assert line.startswith(f"sigma = {s.sigma:.4g} loss (")
    assert "smallest detectable gain = " in line and "80% power, 6 runs vs 5" in line
    js = s.to_json()
    assert js["mde"] == s.mde and js["mde_relative"] == pytest.approx(s.mde / 1.0)
    paired = NoiseAwarePolicy(MetricSpec("loss", "minimize")).sensitivity(base)
    assert paired.paired and "up to 8 interleaved pairs" in paired.line()
    floor = NoiseAwarePolicy(MetricSpec("loss", "minimize"), {"min_delta": 1.0})
    assert floor.sensitivity(base).mde == 1.0  # min_delta is the bar when it is higher
    unknown = NoiseAwarePolicy(MetricSpec("loss", "minimize"), {"baseline_runs": 1})
    u = unknown.sensitivity(Incumbent((1.0,), {}, {}))
    assert u.sigma is None and u.mde is None and "unknown" in u.line()


def test_a_gain_of_the_reported_mde_is_found_about_80_percent_of_the_time():
    base = Incumbent(tuple(1.0 + 0.01 * z for z in (0.0, 1.2, -1.2, 0.5, -0.5)), {}, {})
    s = NoiseAwarePolicy(MetricSpec("loss", "minimize"), {"pairing": False}).sensitivity(base)
    assert s.sigma == pytest.approx(0.01, rel=0.3) and s.mde is not None
    rate = simulate(s.mde / 0.01, 400, seed=3)
    # An approximation (the screening run and early looks are ignored): 80% +- 15 points.
    assert 0.65 <= rate <= 0.95, (rate, s.mde)
