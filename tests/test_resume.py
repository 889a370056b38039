"""Kill the harness at the worst moment, run again: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger, processes_under

SLOW_THEN_GOOD = """#!/usr/bin/env python3
import os, pathlib
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
p = pathlib.Path("train.py")
src = p.read_text().replace("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05")
if n == 1:  # experiment 1 hangs until someone kills it; the same tree re-run later does not
    src = src.replace("def main() -> None:\\n", "def main() -> None:\\n"
                      "    if os.environ['AUTORESEARCH_EXPERIMENT'] == '1': time.sleep(SLEEP)\\n")
p.write_text(src)
print("raise the learning rate" + (" (slowly)" if n == 1 else ""))
"""


def slow_then_good(seconds: int = 60) -> str:
    return SLOW_THEN_GOOD.replace("SLEEP", str(seconds))


def start_harness(repo: Path, tag: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--tag", tag, *args], cwd=repo,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def nothing_left(repo: Path, seconds: float = 5) -> bool:
    """No process of the repo's experiments is left. A sandbox whose parent just died is
    torn down by the kernel a moment later: give it that moment, never a leftover's 60 s."""
    deadline = time.monotonic() + seconds
    while processes_under(repo) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_under(repo) == []


def wait_running(repo: Path, tag: str, exp_id: int, seconds: float = 30) -> dict:
    pending = repo / ".autoresearch" / tag / "inflight" / f"{exp_id}.json"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = json.loads(pending.read_text())
            if state.get("id") == exp_id and state.get("pgids"):
                return state
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"experiment {exp_id} never started")


@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_sigkill_mid_run_then_resume(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": slow_then_good()},
                     toml=toy_toml(sandbox=f'"{sandbox}"', extra=STRICT))
    harness = start_harness(repo, "k", "--proposer", "command:./propose.py")
    state = wait_running(repo, "k", 1)
    harness.send_signal(signal.SIGKILL)
    harness.wait(timeout=10)
    if sandbox == "none":
        assert processes_under(repo), "unsandboxed, the experiment outlives its harness"
    # Sandboxed, bubblewrap's die-with-parent usually takes the run down with the harness;
    # either way the next start finds what is left (by group, or by the owner mark every
    # phase inherits) and kills it: checked after the resume below.

    res = run_cli(repo, "run", "--tag", "k", "--proposer", "command:./propose.py",
                  "--max-experiments", "2")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "k")
    assert [r["id"] for r in rows] == [0, 1, 2]  # none lost, none counted twice
    assert rows[1]["status"] == "interrupted"
    assert rows[1]["parent"] == state["parent"]
    # The interrupted experiment runs again first (same tree), before any new proposal.
    assert rows[2]["evidence"]["rerun_of"] == 1
    assert rows[2]["diff"]["tree"] == rows[1]["diff"]["tree"]
    assert rows[2]["status"] == "keep" and rows[2]["metric"] < rows[0]["metric"]
    assert git(repo, "rev-parse", "autoresearch/k").strip() == rows[2]["commit"]
    # The interrupted attempt is preserved, with its diff.
    assert "time.sleep(60)" in git(repo, "show", "refs/autoresearch/k/discarded/1")
    assert nothing_left(repo)
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not list((repo / ".autoresearch" / "k" / "inflight").glob("*.json"))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                      (signal.SIGHUP, 129)])
def test_first_signal_lets_the_running_experiment_finish(tmp_path: Path, sig: int,
                                                         code: int) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": slow_then_good(3)},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "g", "--proposer", "command:./propose.py")
    wait_running(repo, "g", 1)
    harness.send_signal(sig)
    _, err = harness.communicate(timeout=60)
    assert harness.returncode == code, err
    rows = ledger(repo, "g")
    # Recorded with its real result, and nothing new was started after the signal. A
    # proposal made ahead is kept as `interrupted`, to run first on the next start.
    assert [r["status"] for r in rows[:2]] == ["keep", "keep"], err
    assert all(r["status"] == "interrupted" and "before it ran" in r["reason"]
               and r["run_seconds"] == 0 for r in rows[2:]), err
    assert rows[1]["metric"] < rows[0]["metric"]
    assert git(repo, "rev-parse", "autoresearch/g").strip() == rows[1]["commit"]
    assert nothing_left(repo)


def test_second_ctrl_c_aborts_and_records_interrupted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": slow_then_good()},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "i", "--proposer", "command:./propose.py")
    wait_running(repo, "i", 1)
    harness.send_signal(signal.SIGINT)
    # Two signals sent at once merge into one: wait until the first is acknowledged.
    seen = wait_for_line(harness, "stopping:")
    harness.send_signal(signal.SIGINT)
    _, err = harness.communicate(timeout=30)
    err = seen + err
    assert harness.returncode == 130, err
    assert "aborted by the user" in err
    rows = ledger(repo, "i")
    assert [r["status"] for r in rows] == ["keep", "interrupted"]
    assert "interrupted by the user" in rows[1]["reason"]
    assert nothing_left(repo)
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


def wait_for_line(proc: subprocess.Popen[str], needle: str, seconds: float = 30) -> str:
    """Read the harness's stderr until a line holds `needle`; return what was read."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if needle in line:
                return seen
    raise AssertionError(f"never printed {needle!r}:\n{seen}")


def test_second_harness_on_same_tag_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": slow_then_good()},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "l", "--proposer", "command:./propose.py")
    try:
        wait_running(repo, "l", 1)
        res = run_cli(repo, "run", "--tag", "l")
        assert res.returncode == 2 and "another `autoresearch run --tag l`" in res.stderr
    finally:
        harness.send_signal(signal.SIGINT)
        wait_for_line(harness, "stopping:")
        harness.send_signal(signal.SIGINT)  # the second one aborts the 60 s run
        harness.communicate(timeout=30)


SLOW_PROPOSER = """#!/usr/bin/env python3
import pathlib, time
pathlib.Path("thinking").write_text("yes")  # in its own export: the test waits for it
time.sleep(60)
"""


@pytest.mark.parametrize("pipeline", ["0", "1"])
def test_ctrl_c_while_proposing_cancels_the_proposer_at_once(tmp_path: Path,
                                                             pipeline: str) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SLOW_PROPOSER},
                     toml=toy_toml(extra=STRICT))
    harness = start_harness(repo, "p", "--proposer", "command:./propose.py",
                            "--pipeline", pipeline)
    marker = repo / ".autoresearch" / "p" / "scratch" / "propose-1" / "thinking"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the proposer never started"
    harness.send_signal(signal.SIGINT)
    _, err = harness.communicate(timeout=20)  # not the proposer's 60 s
    assert harness.returncode == 130, err
    assert [r["status"] for r in ledger(repo, "p")] == ["keep"]  # nothing ran: no row
    assert nothing_left(repo)
