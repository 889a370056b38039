"""Paired, interleaved confirmation: drift cancels, noise is pooled, the ladder is the same."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autoresearch.decisions.noise_aware import NoiseAwarePolicy
from autoresearch.decisions.paired import Pair, pair_order
from autoresearch.decisions.policy import Candidate, Incumbent, StrictPolicy, make_policy
from autoresearch.task import ConfigError, MetricSpec, TaskSpec

MIN = MetricSpec("val_bpb", "minimize")
MAX = MetricSpec("accuracy", "maximize")
BASE = (1.00, 1.01, 0.99, 1.005, 0.995)  # sigma about 0.01


def inc(samples=BASE) -> Incumbent:
    return Incumbent(tuple(samples), {}, {})


def cand(*samples: float, metrics=None, lines: int = 0) -> Candidate:
    return Candidate(tuple(samples), metrics or {}, lines, "")


def test_pair_order_alternates_so_a_trend_cancels():
    assert [pair_order(k) for k in range(4)] == [("incumbent", "candidate"),
                                                 ("candidate", "incumbent")] * 2


def test_pairing_is_the_noise_aware_default_and_strict_never_pairs():
    p = NoiseAwarePolicy(MIN)
    assert p.pairing() and p.max_pairs() == 8
    off = NoiseAwarePolicy(MIN, {"pairing": False})
    assert not off.pairing() and off.max_pairs() == 0
    assert not StrictPolicy(MIN).pairing()
    with pytest.raises(NotImplementedError):
        StrictPolicy(MIN).judge_paired(cand(1.0), inc(), [Pair(1.0, 1.0)])


def test_max_pairs_below_confirm_runs_is_a_config_error():
    t = TaskSpec(root=Path("."), editable=("train.py",), protected=(), run="true", metric=MIN,
                 time_budget=1.0, timeout=2.0, decision={"confirm_runs": 3, "max_pairs": 2})
    with pytest.raises(ConfigError, match="decision.max_pairs"):
        make_policy(t)


def drifted_pairs(gain: float, drift: float, n: int) -> list[Pair]:
    """Pairs on a machine that got ``drift`` slower since the baseline: both halves move."""
    jitter = [0.002, -0.003, 0.001, -0.001, 0.003, -0.002]
    return [Pair(1.0 + drift - gain + jitter[k], 1.0 + drift + jitter[-1 - k], seed=k)
            for k in range(n)]


def test_drift_hides_a_real_gain_from_plain_reruns_but_not_from_pairs():
    # The machine became 5 sigma slower after the baseline; the change gains 3 sigma.
    pairs = drifted_pairs(0.03, 0.05, 4)
    plain = NoiseAwarePolicy(MIN, {"pairing": False})
    samples = tuple(p.candidate for p in pairs)
    assert plain.judge(cand(*samples), inc()).status == "discard"
    paired = NoiseAwarePolicy(MIN)
    first = paired.judge(cand(samples[0]), inc())
    assert first.status == "discard"  # the drift fools the single screening run too...
    # ...so pairing only helps once a candidate reaches confirmation; here it does:
    v = paired.judge_paired(cand(*samples), inc(), pairs)
    assert v.status == "keep", v.reason
    ev = v.evidence
    assert ev["paired"] and ev["rule"] == "improvement"
    assert ev["effect"] == pytest.approx(0.03, abs=0.004)
    assert ev["differences"] == pytest.approx([p.incumbent - p.candidate for p in pairs])
    assert ev["seeds"] == [0, 1, 2, 3] and ev["paired_sd"] > 0
    assert "paired effect" in v.reason and "4 pair(s)" in v.reason


def test_a_noop_in_pairs_is_discarded_within_the_pair_limit():
    p = NoiseAwarePolicy(MIN, {"max_pairs": 3})
    rng = random.Random(1)
    pairs: list[Pair] = []
    while True:
        pairs.append(Pair(1.0 + rng.gauss(0, 0.01), 1.0 + rng.gauss(0, 0.01)))
        v = p.judge_paired(cand(*(q.candidate for q in pairs)), inc(), pairs)
        if v.status != "rerun":
            break
    assert v.status == "discard" and len(pairs) <= 3


def test_the_difference_noise_starts_from_the_run_noise_then_is_pooled():
    p = NoiseAwarePolicy(MIN)
    one = p.judge_paired(cand(0.98), inc(), [Pair(0.98, 1.0)])
    assert one.evidence["sigma_source"] == "prior"
    run_sigma = p.pool.estimate().sigma
    assert run_sigma is not None
    assert one.evidence["sigma_diff"] == pytest.approx(2 ** 0.5 * run_sigma)
    two = p.judge_paired(cand(0.98, 0.99), inc(), [Pair(0.98, 1.0), Pair(0.99, 1.0)])
    assert two.evidence["sigma_source"] == "pooled"
    assert two.evidence["noise_pairs"] == 1  # one pair of differences: |0.02 - 0.01|


def test_an_early_look_needs_a_clear_win():
    # One pair 3.5 sigma_d better: beyond the final-look bar, not beyond the early one.
    p = NoiseAwarePolicy(MIN)
    p.observe(BASE)
    run_sigma = p.pool.estimate().sigma
    assert run_sigma is not None
    sigma_d = 2 ** 0.5 * run_sigma
    v = p.judge_paired(cand(0.95), inc(), [Pair(1.0 - 3.5 * sigma_d, 1.0)])
    assert v.status == "rerun" and v.evidence["rule"] == "confirm"
    final_bar = v.evidence["threshold"] / 5 ** 0.5  # sqrt(max_pairs / 1) at the first look
    assert final_bar < 3.5 * sigma_d < v.evidence["threshold"]
    big = p.judge_paired(cand(0.5), inc(), [Pair(0.5, 1.0)])
    assert big.status == "keep"


def test_unknown_noise_asks_for_another_pair_then_decides():
    p = NoiseAwarePolicy(MIN, {"baseline_runs": 1})
    v = p.judge_paired(cand(0.9), inc((1.0,)), [Pair(0.9, 1.0)])
    assert v.status == "rerun" and v.evidence["rule"] == "measure-noise"
    worse = p.judge_paired(cand(1.1), inc((1.0,)), [Pair(1.1, 1.0)])
    assert worse.status == "discard" and worse.evidence["rule"] == "no-evidence"


def test_maximize_and_guardrails_apply_to_pairs():
    p = NoiseAwarePolicy(MAX, {"guardrails": ["mem <= 10"]})
    acc = inc((0.80, 0.81, 0.79, 0.805, 0.795))
    pairs = [Pair(0.9, 0.8), Pair(0.91, 0.8)]
    assert p.judge_paired(cand(0.9, 0.91, metrics={"mem": 5}), acc, pairs).status == "keep"
    broken = p.judge_paired(cand(0.9, 0.91, metrics={"mem": 50}), acc, pairs)
    assert broken.status == "discard" and broken.evidence["rule"] == "guardrail"
    with pytest.raises(ValueError, match="at least one pair"):
        p.judge_paired(cand(0.9), acc, [])


def protocol(policy: NoiseAwarePolicy, rng: random.Random, gain: float, drift: float) -> str:
    """The loop's paired protocol on a machine whose speed wanders by ``drift`` per run."""
    level = [0.0]

    def run(true: float) -> float:
        level[0] += rng.gauss(0, drift)
        return true + level[0] + rng.gauss(0, 0.01)

    baseline = tuple(run(1.0) for _ in range(policy.baseline_runs()))
    v = policy.judge(cand(run(1.0 - gain)), inc(baseline))
    pairs: list[Pair] = []
    while v.status == "rerun":
        assert len(pairs) < policy.max_pairs()
        pairs.append(Pair(run(1.0 - gain), run(1.0)))
        v = policy.judge_paired(cand(*(p.candidate for p in pairs)), inc(baseline), pairs)
    return v.status


def test_paired_protocol_keeps_few_noops_and_most_clear_gains_under_drift():
    rng = random.Random(7)
    trials = 600
    false = sum(protocol(NoiseAwarePolicy(MIN), rng, 0.0, 0.005) == "keep"
                for _ in range(trials)) / trials
    found = sum(protocol(NoiseAwarePolicy(MIN), rng, 0.03, 0.005) == "keep"
                for _ in range(trials)) / trials
    assert false <= 0.06, false  # about 2% expected; 6% leaves room for sampling error
    assert found >= 0.6, found


def test_with_pairing_the_screen_compares_with_the_incumbents_latest_runs():
    # The incumbent was re-measured after the machine slowed by 0.05: its latest five runs.
    series = BASE + tuple(x + 0.05 for x in BASE)
    gained = cand(1.03)  # 0.02 better than the machine now, 0.005 worse than the old mean
    assert NoiseAwarePolicy(MIN).judge(gained, inc(series)).status == "rerun"
    plain = NoiseAwarePolicy(MIN, {"pairing": False}).judge(gained, inc(series))
    assert plain.status == "discard" and plain.evidence["incumbent_mean"] == pytest.approx(
        1.025)
