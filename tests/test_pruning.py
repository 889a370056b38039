"""Early stopping: the prune and screen rules, their options, and a live watch on a real run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoresearch.decisions.policy import make_policy
from autoresearch.decisions.pruning import (
    GO_ON,
    Pruner,
    PruneRule,
    curve_at,
    decide,
)
from autoresearch.execution.process import run_command
from autoresearch.metrics import Curve, ProgressPoint, parse_progress
from autoresearch.task import ConfigError, MetricSpec, TaskSpec

GRID = [i / 20 for i in range(1, 21)]  # 5%, 10%, ... 100%


def loss(offset: float = 0.0, wobble: float = 0.0, upto: float = 1.0) -> Curve:
    """A falling loss curve, shifted by ``offset``; ``wobble`` alternates +-, like run noise."""
    return tuple(ProgressPoint(p, 2.0 + 3.0 * (1 - p) ** 2 + offset + wobble * (-1) ** i)
                 for i, p in enumerate(GRID) if p <= upto + 1e-9)


# Six incumbent runs whose values at any progress spread by about 0.016 (sigma). With
# z = 3 widened to Student-t for 5 dof and a 1% margin the band is about 0.13 wide.
INCUMBENT = tuple(loss(o) for o in (0.0, 0.01, -0.01, 0.02, -0.02, 0.005))
PRUNE = PruneRule(prune=True, min_progress=0.3, margin=0.01, z=3.0)


def test_curve_at_interpolates_and_is_none_outside():
    c = (ProgressPoint(0.1, 4.0), ProgressPoint(0.3, 2.0))
    assert curve_at(c, 0.2) == pytest.approx(3.0)
    assert curve_at(c, 0.1) == 4.0 and curve_at(c, 0.3) == 2.0
    assert curve_at(c, 0.05) is None and curve_at(c, 0.35) is None
    assert curve_at((), 0.5) is None


def test_a_clearly_losing_run_is_pruned_only_after_min_progress():
    bad = loss(0.5)  # 0.5 worse everywhere: far beyond the band
    assert decide(PRUNE, INCUMBENT, bad[:5]) == GO_ON  # 25% < min_progress 30%
    assert decide(PRUNE, INCUMBENT, bad[:6]) == GO_ON  # one point past 30%: patience 2
    d = decide(PRUNE, INCUMBENT, bad[:7])
    assert d.stop and d.rule == "prune" and "35% of the budget" in d.reason
    assert d.evidence["gap"] == pytest.approx(0.5, abs=0.01) and d.evidence["incumbent_curves"] == 6


def test_noise_sized_and_better_runs_go_on():
    assert decide(PRUNE, INCUMBENT, loss(0.05)) == GO_ON  # within the band
    assert decide(PRUNE, INCUMBENT, loss(-0.5)) == GO_ON  # better
    assert decide(PruneRule(), INCUMBENT, loss(0.5)) == GO_ON  # prune and screen both off


def test_one_spike_does_not_prune_but_two_losing_points_do():
    spike = list(loss(0.0, upto=0.5))
    spike[-2] = ProgressPoint(spike[-2].progress, spike[-2].value + 1.0)
    assert decide(PRUNE, INCUMBENT, tuple(spike)) == GO_ON
    spike[-1] = ProgressPoint(spike[-1].progress, spike[-1].value + 1.0)
    assert decide(PRUNE, INCUMBENT, tuple(spike)).stop


def test_the_margin_is_relative_to_the_incumbents_value():
    # 0.25 worse is beyond the noise band plus 1%, but inside noise plus 10% (~0.3 more).
    assert decide(PRUNE, INCUMBENT, loss(0.25)).stop
    assert decide(PruneRule(prune=True, margin=0.10, z=3.0), INCUMBENT, loss(0.25)) == GO_ON


def test_maximize_curves_are_worse_when_lower():
    acc = tuple(tuple(ProgressPoint(pt.progress, -pt.value) for pt in c) for c in INCUMBENT)
    low = tuple(ProgressPoint(pt.progress, -pt.value) for pt in loss(0.5))
    assert decide(PRUNE, acc, low, direction="maximize").stop
    assert decide(PRUNE, acc, low, direction="minimize") == GO_ON


def test_screen_stops_at_its_fraction_without_a_margin():
    rule = PruneRule(screen=0.25, z=3.0, margin=0.5)  # the prune margin does not apply
    worse = loss(0.2)  # beyond the ~0.10 noise band, far inside the 50% margin
    assert decide(rule, INCUMBENT, worse[:4]) == GO_ON  # 20%: not screened yet
    d = decide(rule, INCUMBENT, worse[:5])
    assert d.stop and d.rule == "screen" and "25%" in d.reason
    # Within noise at 25%: it goes on to the full budget even if it worsens later.
    late = loss(0.0)[:5] + loss(1.0)[5:]
    assert decide(rule, INCUMBENT, late) == GO_ON


def test_unknown_noise_screens_nothing_and_prunes_only_on_the_margin():
    one = (loss(0.0),)
    assert decide(PruneRule(screen=0.25), one, loss(0.3)) == GO_ON
    assert decide(PRUNE, one, loss(0.3)).stop  # 0.3 > 1% of ~2.5
    assert decide(PRUNE, one, loss(0.02)) == GO_ON
    assert decide(PruneRule(prune=True, margin=0.0), one, loss(3.0)) == GO_ON


def test_noise_is_pooled_over_groups_of_repeated_curves():
    # The incumbent has one curve; the baseline's six give the noise.
    pruner = Pruner(PRUNE, "val_bpb", "minimize")
    for c in INCUMBENT:
        pruner.observe("base", {"train_loss": c})
    pruner.observe("kept", {"train_loss": loss(-0.2)})
    assert len(pruner.curves("base", "train_loss")) == 6
    d = pruner.check("kept", "train_loss", loss(0.3))  # 0.5 worse than the new incumbent
    assert d.stop and d.evidence["sigma"] == pytest.approx(0.0157, rel=0.05)
    assert d.evidence["incumbent_curves"] == 1
    assert pruner.check("kept", "train_loss", loss(-0.2)) == GO_ON
    assert pruner.check("unknown-commit", "train_loss", loss(5.0)) == GO_ON
    assert pruner.metric_for(["train_loss", "val_bpb"]) == "val_bpb"
    assert pruner.metric_for(["train_loss"]) == "train_loss"


# --- options ----------------------------------------------------------------------------

def task(decision: dict) -> TaskSpec:
    return TaskSpec(root=Path("."), editable=("train.py",), protected=(), run="true",
                    metric=MetricSpec("val_bpb", "minimize"), time_budget=1.0, timeout=2.0,
                    decision=decision)


@pytest.mark.parametrize("policy", ["noise-aware", "strict"])
def test_prune_options_are_validated_by_every_policy(policy):
    assert make_policy(task({"policy": policy})).pruner() is None  # off by default
    p = make_policy(task({"policy": policy, "prune": True, "prune_min_progress": 0.5,
                          "prune_margin": 0.02, "screen": 0.25}))
    pruner = p.pruner()
    assert pruner is not None
    assert pruner.rule == PruneRule(True, 0.5, 0.02, 2.0, 0.25)
    for bad, key in [({"prune": 1}, "decision.prune"),
                     ({"prune_min_progress": 1.5}, "decision.prune_min_progress"),
                     ({"prune_margin": -0.1}, "decision.prune_margin"),
                     ({"screen": 1.0}, "decision.screen"),
                     ({"prune_patience": 3}, "decision.prune_patience")]:
        with pytest.raises(ConfigError, match=key):
            make_policy(task({"policy": policy, **bad}))


# --- the live watch, on a real process ----------------------------------------------------

SCRIPT = """
import sys, time
offset = float(sys.argv[1])
for i in range(1, 21):
    p = i / 20
    v = 2.0 + 3.0 * (1 - p) ** 2 + offset
    # Half a line first: the watch must not read a value from an unfinished line.
    print(f"METRIC train_loss={v}", end="", flush=True)
    time.sleep(0.01)
    print(f" progress={p}", flush=True)
    print("step", i, flush=True)
print("DONE", flush=True)
"""


def run_watched(tmp_path: Path, offset: float, name: str):
    script = tmp_path / "curve.py"
    script.write_text(SCRIPT)
    pruner = Pruner(PRUNE, "val_bpb", "minimize")
    for c in INCUMBENT:
        pruner.observe("inc", {"train_loss": c})
    log = tmp_path / f"{name}.log"
    watch = pruner.watch("inc", log)
    # A script that reached "DONE" was not stopped; the timeout is far beyond its runtime.
    res = run_command(f"{sys.executable} {script} {offset}", tmp_path, log, timeout=60,
                      should_stop=watch.should_stop)
    return res, watch, log.read_text()


def test_watch_stops_a_losing_run_and_keeps_its_log(tmp_path: Path) -> None:
    res, watch, text = run_watched(tmp_path, 0.5, "bad")
    assert res.interrupted and not res.timed_out
    assert "DONE" not in text
    assert watch.decision is not None and watch.decision.rule == "prune"
    assert watch.decision.evidence["metric"] == "train_loss"
    assert watch.decision.evidence["progress"] >= 0.35  # two points past min_progress
    # What the watch saw is exactly what the log holds, up to the stop.
    assert tuple(watch.points["train_loss"]) == \
        parse_progress(text)["train_loss"][:len(watch.points["train_loss"])]


def test_watch_lets_a_good_run_finish(tmp_path: Path) -> None:
    res, watch, text = run_watched(tmp_path, -0.05, "good")
    assert res.ok and not res.interrupted and "DONE" in text
    assert watch.decision is None
    assert not watch.should_stop()  # the whole curve, read after the exit, still goes on
    assert len(watch.points["train_loss"]) == 20
