"""`init --template bench`: a non-ML benchmark task that works end to end through the loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli
from test_loop import ledger

from autoresearch.execution.checks import baseline_checks
from autoresearch.execution.measure import make_guards
from autoresearch.task import load_task
from autoresearch.workspace import Workspace


@pytest.mark.slow
def test_the_bench_template_runs_through_the_loop(tmp_path: Path) -> None:
    repo = tmp_path / "bench"
    res = run_cli(tmp_path, "init", "--yes", "--template", "bench", str(repo))
    assert res.returncode == 0, res.stderr
    task = load_task(repo / "autoresearch.toml")
    assert task.protected == ("bench.py", "test_solution.py") and task.checks

    ws = Workspace(repo, "probe")  # the gate passes on the unmodified template
    ws.ignore_state_dir()
    ws.create_branch()
    ws.open_worktree()
    guards = make_guards(task, ws, lambda _: None, lambda: True)
    assert baseline_checks(task, guards, tmp_path / "logs", dict(os.environ)) is None
    assert "OK" in (tmp_path / "logs" / "baseline.check0.log").read_text()
    ws.close_worktree()

    res = run_cli(repo, "run", "--tag", "b", "--max-experiments", "2", "--time-budget", "2",
                  "--policy", "strict", timeout=300)
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "b")
    assert rows[0]["status"] == "keep" and rows[0]["metric"] > 0
    assert rows[0]["metrics"]["rounds"] >= 1
    assert [r["status"] in ("keep", "discard") for r in rows[1:]] == [True, True], \
        [(r["status"], r["reason"]) for r in rows]
    for row in rows[1:]:
        assert "INSERTION_THRESHOLD" in row["description"]
        check_log = repo / ".autoresearch" / "b" / "logs" / f"{row['id']:04d}.check0.log"
        assert check_log.exists() == (row["status"] == "keep")
        if row["status"] == "keep":
            assert "OK" in check_log.read_text()
