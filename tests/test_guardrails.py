"""Guardrail rules: parsing and evaluation against a run's and the baseline's metrics."""

from __future__ import annotations

import math

import pytest

from autoresearch.decisions.guardrails import check_guardrails, parse_guardrail, parse_guardrails
from autoresearch.task import ConfigError


@pytest.mark.parametrize("text, metric, op, factor, offset", [
    ("num_params_M <= 50", "num_params_M", "<=", None, 50.0),
    ("peak_vram_mb <= 1.2 * baseline", "peak_vram_mb", "<=", 1.2, 0.0),
    ("peak_vram_mb<=1.2×baseline", "peak_vram_mb", "<=", 1.2, 0.0),
    ("peak_vram_mb ≤ baseline * 1.5", "peak_vram_mb", "<=", 1.5, 0.0),
    ("training_seconds < baseline + 30", "training_seconds", "<", 1.0, 30.0),
    ("mfu_percent >= 0.9 x baseline - 1e-1", "mfu_percent", ">=", 0.9, -0.1),
    ("loss > -2.5", "loss", ">", None, -2.5),
])
def test_parse(text, metric, op, factor, offset):
    g = parse_guardrail(text)
    assert (g.metric, g.op, g.factor) == (metric, op, factor)
    assert g.offset == pytest.approx(offset)


@pytest.mark.parametrize("text", ["peak_vram_mb", "peak_vram_mb == 3", "<= 5",
                                  "x <= 2 * baseline * 3", "x <= twice baseline", "x <= 1.2 *"])
def test_parse_errors_name_the_key(text):
    with pytest.raises(ConfigError, match=r"decision.guardrails\[1\]"):
        parse_guardrails(["a <= 1", text])


def test_evaluation():
    rules = parse_guardrails(["peak_vram_mb <= 1.2 * baseline", "num_params_M <= 50",
                              "mfu_percent >= 0.9 * baseline"])
    base = {"peak_vram_mb": 1000.0, "num_params_M": 50.3, "mfu_percent": 40.0}
    ok = {"peak_vram_mb": 1200.0, "num_params_M": 50.0, "mfu_percent": 36.0}
    assert check_guardrails(rules, ok, base) == []
    broken = check_guardrails(rules, {**ok, "peak_vram_mb": 1200.5, "mfu_percent": 35.9}, base)
    assert len(broken) == 2
    assert "peak_vram_mb = 1200.5, limit 1200" in broken[0] and "mfu_percent" in broken[1]


def test_missing_or_nonfinite_values_break_the_rule():
    (rule,) = parse_guardrails(["peak_vram_mb <= 1.2 * baseline"])
    assert "did not report" in (rule.violation({}, {"peak_vram_mb": 1.0}) or "")
    assert "did not report" in (rule.violation({"peak_vram_mb": math.nan},
                                               {"peak_vram_mb": 1.0}) or "")
    assert "baseline did not report" in (rule.violation({"peak_vram_mb": 1.0}, {}) or "")
    assert rule.to_json({"peak_vram_mb": 1.0}, {"peak_vram_mb": 1.0}) == {
        "rule": "peak_vram_mb <= 1.2 * baseline", "value": 1.0, "limit": 1.2, "ok": True}
