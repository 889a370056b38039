"""Early stopping through the real loop: a clearly losing run is stopped and recorded
`pruned` (a discard), a winning one runs to the end. Real CLI, sandbox, git."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from test_loop import ledger
from test_parallel import proposer

TRAIN = """import os, time
VALUE = 1.0
STEPS = 20
for step in range(STEPS):
    time.sleep(0.1)
    progress = (step + 1) / STEPS
    print(f"METRIC train_loss={VALUE * (2 - progress):.6f} progress={progress:.3f}", flush=True)
print("---")
print(f"val_loss: {VALUE:.6f}")
"""
WORSE = ("VALUE = 1.0", "VALUE = 2.0")
BETTER = ("VALUE = 1.0", "VALUE = 0.5")
DECISION = '\n[decision]\npolicy = "strict"\nbaseline_runs = 2\nprune = true\n'


@pytest.mark.slow
def test_a_losing_run_is_pruned_and_a_winning_one_is_not(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": TRAIN,
                                            "propose.py": proposer([WORSE, BETTER])},
                     toml=toy_toml(extra=DECISION))
    res = run_cli(repo, "run", "--tag", "p", "--max-experiments", "2", "--pipeline", "0",
                  "--proposer", "command:./propose.py")
    assert res.returncode == 0, res.stderr
    rows = {r["description"]: r for r in ledger(repo, "p")}
    worse, better = rows["edit 1"], rows["edit 2"]
    assert worse["status"] == "pruned", worse["reason"]
    assert worse["metric"] is None and worse["evidence"]["prune"]["metric"] == "train_loss"
    # Stopped early: a fraction of the baseline's time, not its full 20 steps.
    baseline = rows["baseline"]
    assert worse["run_seconds"] < 0.8 * baseline["run_seconds"]
    assert better["status"] == "keep" and better["metric"] == 0.5
