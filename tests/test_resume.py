"""Kill the harness at the worst moment, run again: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger, processes_under

from autoresearch.execution.sandbox import bwrap_works

SLOW_THEN_GOOD = """#!/usr/bin/env python3
import os, pathlib
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
p = pathlib.Path("train.py")
src = p.read_text().replace("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05")
if n == 1:  # this one hangs until someone kills it
    src = src.replace("def main() -> None:\\n", "def main() -> None:\\n    time.sleep(60)\\n")
p.write_text(src)
print("raise the learning rate" + (" (slowly)" if n == 1 else ""))
"""


def start_harness(repo: Path, tag: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--tag", tag, *args], cwd=repo,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_running(repo: Path, tag: str, exp_id: int, seconds: float = 30) -> dict:
    pending = repo / ".autoresearch" / tag / "pending.json"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = json.loads(pending.read_text())
            if state.get("id") == exp_id and state.get("pgid"):
                return state
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"experiment {exp_id} never started")


@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_sigkill_mid_run_then_resume(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SLOW_THEN_GOOD},
                     toml=toy_toml(sandbox=f'"{sandbox}"', extra=STRICT))
    harness = start_harness(repo, "k", "--proposer", "command:./propose.py")
    state = wait_running(repo, "k", 1)
    harness.send_signal(signal.SIGKILL)
    harness.wait(timeout=10)
    if sandbox == "none" or bwrap_works():
        assert processes_under(repo), "unsandboxed, the experiment outlives its harness"
    else:  # die-with-parent: the sandbox goes with the harness that started it
        deadline = time.monotonic() + 5
        while processes_under(repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_under(repo) == []

    res = run_cli(repo, "run", "--tag", "k", "--proposer", "command:./propose.py",
                  "--max-experiments", "2")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "k")
    assert [r["id"] for r in rows] == [0, 1, 2]  # none lost, none counted twice
    assert rows[1]["status"] == "interrupted"
    assert rows[1]["parent"] == state["parent"]
    assert rows[2]["status"] == "keep" and rows[2]["metric"] < rows[0]["metric"]
    assert git(repo, "rev-parse", "autoresearch/k").strip() == rows[2]["commit"]
    # The interrupted attempt is preserved, with its diff.
    assert "time.sleep(60)" in git(repo, "show", "refs/autoresearch/k/discarded/1")
    assert processes_under(repo) == []
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not (repo / ".autoresearch" / "k" / "pending.json").exists()


def test_ctrl_c_ends_the_run_cleanly_as_interrupted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SLOW_THEN_GOOD},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "i", "--proposer", "command:./propose.py")
    wait_running(repo, "i", 1)
    t0 = time.monotonic()
    harness.send_signal(signal.SIGINT)
    _, err = harness.communicate(timeout=30)
    assert time.monotonic() - t0 < 15
    assert harness.returncode == 0, err
    assert "stopped by the user" in err
    rows = ledger(repo, "i")
    assert [r["status"] for r in rows] == ["keep", "interrupted"]
    assert "interrupted by the user" in rows[1]["reason"]
    assert processes_under(repo) == []
    assert git(repo, "rev-parse", "autoresearch/i").strip() == rows[0]["commit"]


def test_rerun_continues_where_it_stopped(toy_repo: Path) -> None:
    assert run_cli(toy_repo, "run", "--tag", "c", "--max-experiments", "2").returncode == 0
    first = ledger(toy_repo, "c")
    assert run_cli(toy_repo, "run", "--tag", "c", "--max-experiments", "4").returncode == 0
    rows = ledger(toy_repo, "c")
    assert rows[:len(first)] == first
    ids = [r["id"] for r in rows]
    assert ids == list(range(len(rows)))
    assert sum(1 for r in rows if r["description"] == "baseline") == 1
    assert sum(1 for r in rows if r["proposer"] == "sweep") == 4


def test_second_harness_on_same_tag_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SLOW_THEN_GOOD},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "l", "--proposer", "command:./propose.py")
    try:
        wait_running(repo, "l", 1)
        res = run_cli(repo, "run", "--tag", "l")
        assert res.returncode == 2 and "another `autoresearch run --tag l`" in res.stderr
    finally:
        os.killpg(harness.pid, signal.SIGINT)
        harness.communicate(timeout=30)
