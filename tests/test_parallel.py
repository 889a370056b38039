"""Many experiments at once: worker slots, proposals made ahead, one decision point.

Real CLI, real git, real sandboxed subprocesses. Each test checks one invariant of
the decision point (see `autoresearch.decisions.point`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger, processes_under

from autoresearch.execution.sandbox import bwrap_works

pytestmark = pytest.mark.skipif(bwrap_works() is not None,
                                reason="parallel workers need the bubblewrap sandbox")

# Experiment n's proposal: one constant changed, made slow by a sleep in the same line, so
# the order in which experiments finish is fixed.
PROPOSE = """#!/usr/bin/env python3
import os, pathlib
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
p = pathlib.Path("train.py")
edits = EDITS
old, new = edits[min(n, len(edits)) - 1]
p.write_text(p.read_text().replace(old, new))
print(f"edit {n}")
"""


def proposer(edits: list[tuple[str, str]]) -> str:
    return PROPOSE.replace("EDITS", repr(edits))


def tree_of(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", f"{commit}^{{tree}}").strip()


def check_branch_invariants(repo: Path, tag: str, rows: list[dict]) -> None:
    """Every kept commit's exact tree was measured, the branch moved only through keeps in
    ledger order, and no tree was measured twice."""
    kept = [r for r in rows if r["status"] == "keep"]
    for prev, row in zip(kept, kept[1:]):
        assert row["parent"] == prev["commit"]  # judged against the incumbent of its time
    for row in kept:
        assert tree_of(repo, row["commit"]) == row["diff"]["tree"]
        assert row["evidence"]["samples"], "a keep without a measurement"
    assert git(repo, "rev-parse", f"autoresearch/{tag}").strip() == kept[-1]["commit"]
    measured = [r["diff"]["tree"] for r in rows if r["status"] in ("keep", "discard")]
    assert len(measured) == len(set(measured))
    # Rows are in the order decisions were made; ids in the order experiments started.
    assert sorted(r["id"] for r in rows) == list(range(len(rows)))


def test_three_workers_share_the_night(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(extra=STRICT))
    res = run_cli(repo, "run", "--tag", "w", "--workers", "3", "--max-experiments", "6")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "w")
    assert len(rows) >= 7
    workers = {r["worker"] for r in rows[1:] if r["status"] not in ("invalid", "duplicate")}
    assert len(workers) >= 2 and workers <= {"w0", "w1", "w2"}, workers
    check_branch_invariants(repo, "w", rows)
    # status shows each worker's busy share; report draws one lane per worker.
    status = run_cli(repo, "status", "--tag", "w", "--json")
    live = json.loads(status.stdout)["workers"]
    assert {w["worker"] for w in live["workers"]} >= workers
    assert all(0 < w["busy"] <= 1 for w in live["workers"] if w["worker"] in workers)
    assert live["experiments_per_hour"] > 0 and live["in_flight"] == []
    assert "experiments/hour" in run_cli(repo, "status", "--tag", "w").stderr
    assert run_cli(repo, "report", "--tag", "w").returncode == 0
    assert (repo / ".autoresearch" / "w" / "utilization.png").stat().st_size > 1000


LR_SLOW = ("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05 if not __import__('time').sleep(1.5)"
           " else 0")
MOMENTUM_SLOWER = ("MOMENTUM = 0.0", "MOMENTUM = 0.5 if not __import__('time').sleep(4) else 0")
LR_CLASH = ("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.04 if not __import__('time').sleep(4)"
            " else 0")


def two_workers(tmp_path: Path, tag: str, edits: list[tuple[str, str]], extra: str = ""
                ) -> tuple[Path, list[dict]]:
    """Two proposals on two workers through the real CLI: the repo and its ledger rows."""
    repo = make_repo(tmp_path / "r", files={"propose.py": proposer(edits)},
                     toml=toy_toml(extra=STRICT + extra))
    res = run_cli(repo, "run", "--tag", tag, "--workers", "2", "--max-experiments", "2",
                  "--proposer", "command:./propose.py")
    assert res.returncode == 0, res.stderr
    return repo, ledger(repo, tag)


def test_a_keep_on_an_old_incumbent_is_merged_and_measured_again(tmp_path: Path) -> None:
    repo, rows = two_workers(tmp_path, "s", [LR_SLOW, MOMENTUM_SLOWER])
    assert [r["status"] for r in rows[:2]] == ["keep", "keep"], rows
    second = rows[2]
    # Made on the baseline, judged better there, but experiment 1 was kept meanwhile:
    # its change was merged onto the new tip and the merged tree was what ran and counts.
    assert second["evidence"]["rebased_from"] == rows[0]["commit"]
    assert second["parent"] == rows[1]["commit"]
    merged = git(repo, "show", f"{second['commit']}:train.py")
    assert "LEARNING_RATE = 0.05" in merged and "MOMENTUM = 0.5" in merged
    assert second["status"] in ("keep", "discard")
    check_branch_invariants(repo, "s", rows)


def test_a_conflicting_keep_runs_its_own_tree_against_the_new_incumbent(tmp_path: Path
                                                                       ) -> None:
    repo, rows = two_workers(tmp_path, "c", [LR_SLOW, LR_CLASH])
    assert rows[1]["status"] == "keep"
    second = rows[2]
    # Both set LEARNING_RATE: no merge, so its own tree ran again against the new tip.
    assert second["evidence"]["conflict"] is True
    assert second["parent"] == rows[1]["commit"]
    assert "LEARNING_RATE = 0.04" in git(repo, "show", f"{second['commit']}:train.py")
    assert second["status"] in ("keep", "discard")
    check_branch_invariants(repo, "c", rows)


def test_stale_discard_rule_records_stale(tmp_path: Path) -> None:
    repo, rows = two_workers(tmp_path, "d", [LR_SLOW, LR_CLASH],
                             '\n[execution]\nstale = "discard"\n')
    assert rows[1]["status"] == "keep" and rows[2]["status"] == "stale"
    # Never kept, never lost: its commit is preserved with the discarded ones.
    assert "LEARNING_RATE = 0.04" in git(repo, "show", "refs/autoresearch/d/discarded/2")
    check_branch_invariants(repo, "d", rows)


HANG = ("def main() -> None:\n", "def main() -> None:\n"
        "    if int(os.environ['AUTORESEARCH_EXPERIMENT']) <= 3: time.sleep(60)\n")


@pytest.mark.slow
def test_sigkill_with_three_in_flight_loses_nothing(tmp_path: Path) -> None:
    edits = [(HANG[0], HANG[1] + f"    LR_{n} = {n}\n") for n in (1, 2, 3)]
    edits += [("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05")]
    repo = make_repo(tmp_path / "r", files={"propose.py": proposer(edits)},
                     toml=toy_toml(extra=STRICT))
    harness = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--tag", "k", "--workers", "3",
         "--proposer", "command:./propose.py"], cwd=repo, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    inflight = repo / ".autoresearch" / "k" / "inflight"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [json.loads(p.read_text()) for p in inflight.glob("*.json")] \
            if inflight.is_dir() else []
        if sum(bool(s.get("pgids")) for s in states) >= 3:
            break
        time.sleep(0.1)
    else:
        harness.kill()
        raise AssertionError("three experiments never ran at once")
    harness.send_signal(signal.SIGKILL)
    harness.wait(timeout=10)
    # Three running, and perhaps one more admitted and waiting for a worker.
    in_flight = sorted(json.loads(p.read_text())["id"] for p in inflight.glob("*.json"))
    assert in_flight[:3] == [1, 2, 3]

    # Room for the rows already there (duplicates of the last edit, perhaps), the
    # interrupted rows the resume records, and one re-run of each.
    before = sum(r["proposer"] != "baseline" for r in ledger(repo, "k"))
    res = run_cli(repo, "run", "--tag", "k", "--workers", "3", "--max-experiments",
                  str(before + 2 * len(in_flight)), "--proposer", "command:./propose.py")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "k")
    interrupted = [r for r in rows if r["status"] == "interrupted"]
    assert sorted(r["id"] for r in interrupted) == in_flight
    reruns = [r for r in rows if "rerun_of" in r["evidence"]]
    # Each interrupted experiment ran again exactly once, on its own tree; none counted twice.
    assert sorted(r["evidence"]["rerun_of"] for r in reruns) == in_flight, [
        (r["id"], r["status"], r["reason"][:80], r["evidence"].get("rerun_of")) for r in rows]
    for r in reruns:
        assert r["diff"]["tree"] == next(i for i in interrupted
                                         if i["id"] == r["evidence"]["rerun_of"])["diff"]["tree"]
    assert all(r["status"] in ("keep", "discard") for r in reruns)
    assert not list(inflight.glob("*.json"))
    deadline = time.monotonic() + 10  # a sandbox on its way out is given a moment
    while processes_under(repo) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = []
    for p in processes_under(repo):
        try:
            left.append((p.pid, p.cmdline()[-6:], p.environ().get("AUTORESEARCH_EXPERIMENT")))
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
    assert left == []
    check_branch_invariants(repo, "k", rows)
