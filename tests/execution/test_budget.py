"""The harness keeps the time budget: real runs through the real CLI, real stop files.

The stand-in below trains by sleeping in small steps, announces its first step, and
honours the stop file unless told not to; the proposer rewrites its constants.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger

from autoresearch.execution.budget import (
    STOP_ENV,
    Allowance,
    BudgetClock,
    describe,
    legacy_allowance,
    stop_allowance,
)
from autoresearch.execution.measure import allowance, smallest_caught_fake
from autoresearch.execution.process import run_command
from autoresearch.ledger import Experiment
from autoresearch.task import load_task

STANDIN = """import os, time
START_DELAY = 0.0
FAKE = 1.0
HONOUR_STOP = True
budget = float(os.environ["AUTORESEARCH_TIME_BUDGET"])
stop = os.environ.get("AUTORESEARCH_STOP_FILE", "")
time.sleep(START_DELAY)  # start-up: imports, data
t0 = time.time()
steps = 0
while (time.time() - t0) / FAKE < budget:  # FAKE > 1: a clock that runs slow
    time.sleep(0.02)
    steps += 1
    if steps == 1:
        print("AUTORESEARCH started", flush=True)
    if HONOUR_STOP and stop and os.path.exists(stop):
        break
print("---")
print(f"val_loss: {1 / steps:.6f}")
print(f"num_steps: {steps}")
"""

PROPOSE = """#!/usr/bin/env python3
import pathlib
p = pathlib.Path("train.py")
text = p.read_text()
for old, new in %r:
    text = text.replace(old, new)
p.write_text(text)
print("changed the stand-in")
"""


def _experiment(tmp_path: Path, budget: int, *edits: tuple[str, str],
                sandbox: str = "none") -> list[dict]:
    """Baseline, then one experiment with `edits` applied to the stand-in; the ledger."""
    repo = make_repo(tmp_path / "r", files={"train.py": STANDIN,
                                            "propose.py": PROPOSE % (list(edits),)},
                     toml=toy_toml(time_budget=str(budget), timeout="60",
                                   sandbox=f'"{sandbox}"', extra=STRICT))
    res = run_cli(repo, "run", "--tag", "b", "--proposer", "command:./propose.py",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "b")
    assert rows[0]["status"] == "keep" and "startup_seconds" in rows[0]["evidence"]
    return rows


@pytest.mark.slow
def test_an_honest_run_with_a_slow_start_up_stays_valid(tmp_path: Path) -> None:
    # 6 s of start-up against a baseline's fraction of a second: the older rule (total time
    # within the budget plus 5 s) made this `invalid`; now the clock waits for the first step.
    rows = _experiment(tmp_path, 4, ("START_DELAY = 0.0", "START_DELAY = 6.0"))
    assert rows[1]["status"] in ("keep", "discard"), rows[1]["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_a_fake_clock_that_honours_the_stop_gains_nothing(tmp_path: Path, sandbox: str) -> None:
    # The stop file is created from outside, in a directory the sandbox binds read-only.
    rows = _experiment(tmp_path, 2, ("FAKE = 1.0", "FAKE = 5.0"), sandbox=sandbox)
    assert rows[1]["status"] in ("keep", "discard"), rows[1]["reason"]
    assert "teardown_seconds" in rows[1]["evidence"]  # it was stopped, not its own clock
    # Stopped at the same budget, it trained about as many steps as the baseline, not 5x.
    assert rows[1]["metrics"]["num_steps"] < 2 * rows[0]["metrics"]["num_steps"]


@pytest.mark.slow
def test_a_fake_clock_that_ignores_the_stop_is_invalid(tmp_path: Path) -> None:
    rows = _experiment(tmp_path, 2, ("FAKE = 1.0", "FAKE = 5.0"),
                       ("HONOUR_STOP = True", "HONOUR_STOP = False"))
    assert rows[1]["status"] == "invalid"
    assert rows[1]["reason"].startswith("over budget: the run was still running")
    assert STOP_ENV in rows[1]["reason"]


def test_a_progress_metric_line_starts_the_clock_and_the_stop_reaches_the_run(
        tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        "import os, time\n"
        "print('step 0 | loss 3.1')\n"
        "print('METRIC train_loss=3.1 progress=0.0', flush=True)\n"
        f"while not os.path.exists(os.environ['{STOP_ENV}']):\n"
        "    time.sleep(0.01)\n"
        "print('stopped')\n")
    stop = tmp_path / "control" / "stop"
    stop.parent.mkdir()
    log = tmp_path / "run.log"
    clock = BudgetClock(log, stop, 0.5, stop_allowance(0.5, 30.0, 0.0))
    res = run_command([sys.executable, str(script)], tmp_path, log, 60,
                      {"PATH": "/usr/bin:/bin", STOP_ENV: str(stop)}, poll=clock.poll)
    assert res.ok and log.read_text().endswith("stopped\n")
    assert clock.marker is not None and clock.stopped is not None
    assert clock.stopped >= clock.marker + 0.5  # the budget counted from the first step
    assert set(clock.notes(res.seconds)) == {"startup_seconds", "teardown_seconds"}


def test_no_first_step_by_the_start_up_limit_starts_the_clock_anyway(tmp_path: Path) -> None:
    # A run that never announces its first step (or announces it late, having trained
    # already) is stopped at its start-up limit plus the budget, and must then exit.
    script = tmp_path / "run.py"
    script.write_text("import time\nwhile True:\n    time.sleep(0.01)\n")
    stop = tmp_path / "stop"
    log = tmp_path / "run.log"
    rule = Allowance(0.3, startup_limit=0.2)
    clock = BudgetClock(log, stop, 0.2, rule)
    res = run_command([sys.executable, str(script)], tmp_path, log, 60, poll=clock.poll)
    assert res.violation.startswith("over budget") and "start-up limit" in res.violation
    assert clock.marker is None and clock.started == 0.2 and stop.exists()


def test_the_rule_comes_from_the_baseline_and_old_tasks_keep_theirs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(time_budget="300", timeout="900"))
    task = load_task(repo / "autoresearch.toml")
    marked = Experiment(id=0, status="keep", description="baseline", run_seconds=312,
                        evidence={"time_budget": 300, "startup_seconds": 10.0,
                                  "teardown_seconds": 1.0})
    rule = allowance(task, marked)
    assert isinstance(rule, Allowance) and rule.stops
    assert float(rule) == 15.0 and rule.startup_limit == 40.0  # 5% of 300; 10 + 10% of 300
    # The published figures: a run that keeps training past the stop is caught above
    # 1.05x; one that also announces its first step as late as it may, above 1.15x.
    assert smallest_caught_fake(task, rule) == pytest.approx(1.05)
    worst = 1 + (rule.startup_limit - 10.0 + rule) / task.time_budget
    assert worst == pytest.approx(1.15) and worst <= 1.25
    # A slow exit in the baseline buys a longer grace (3x its teardown), not a smaller one.
    assert float(allowance(task, Experiment(
        id=0, status="keep", description="baseline", run_seconds=330,
        evidence={"time_budget": 300, "startup_seconds": 10.0, "teardown_seconds": 8.0}))) == 24
    # A baseline that printed no marker (a task written before the rule): the older rule.
    old = allowance(task, Experiment(id=0, status="keep", description="baseline",
                                     run_seconds=310, evidence={"time_budget": 300}))
    assert not old.stops and old == legacy_allowance(300, 10) == 0.05 * 300 + 1.5 * 10
    assert "first step" in describe(300, rule) and "start-up counts" in describe(300, old)
