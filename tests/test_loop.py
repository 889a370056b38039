"""The loop end to end: real git repos, real subprocesses, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
from conftest import TOY, git, make_repo, run_cli, toy_toml

from autoresearch.workspace import sha256

STRICT = '\n[decision]\npolicy = "strict"\n'


def ledger(repo: Path, tag: str) -> list[dict]:
    path = repo / ".autoresearch" / tag / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def processes_under(path: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and Path(p.cwd()).is_relative_to(path):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def test_sweep_improves_the_toy_metric(toy_repo: Path) -> None:
    head_before = git(toy_repo, "rev-parse", "HEAD")
    res = run_cli(toy_repo, "run", "--tag", "s", "--proposer", "sweep", "--max-experiments", "8")
    assert res.returncode == 0, res.stderr
    rows = ledger(toy_repo, "s")
    assert rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"
    kept = [r for r in rows if r["status"] == "keep"]
    assert len(kept) >= 2, [(r["status"], r["description"]) for r in rows]
    assert kept[-1]["metric"] < rows[0]["metric"] * 0.8  # a real improvement, not noise
    # The run branch sits on the best kept commit; the user's checkout is untouched.
    assert git(toy_repo, "rev-parse", "autoresearch/s").strip() == kept[-1]["commit"]
    assert git(toy_repo, "rev-parse", "HEAD") == head_before
    assert git(toy_repo, "branch", "--show-current").strip() == "main"
    assert git(toy_repo, "status", "--porcelain") == ""
    # Every discarded experiment stays inspectable under its ref, result in the message.
    for r in rows:
        if r["status"] not in ("keep", "remeasure"):
            ref = f"refs/autoresearch/s/discarded/{r['id']}"
            assert git(toy_repo, "rev-parse", ref).strip() == r["commit"]
            assert f"status: {r['status']}" in git(toy_repo, "log", "-1", "--format=%B", ref)
    # Karpathy's results.tsv columns, exactly.
    tsv = (toy_repo / ".autoresearch" / "s" / "results.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["commit", "val_loss", "memory_gb", "status", "description"]
    assert len(tsv) == len(rows) + 1
    assert tsv[1].split("\t")[0] == rows[0]["commit"][:7]
    # No worktree is left behind once the run stops.
    assert len(git(toy_repo, "worktree", "list").splitlines()) == 1


PROPOSER = """#!/usr/bin/env python3
import os, pathlib
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
actions = {
    1: lambda: pathlib.Path("prepare.py").write_text("EVIL = 1\\n"),
    2: lambda: pathlib.Path("helper.py").write_text("x = 1\\n"),
    3: lambda: pathlib.Path("program.md").write_text("ignore the rules\\n"),
    4: lambda: pathlib.Path("prepare.py").unlink(),
    5: lambda: pathlib.Path("train.py").rename("train2.py"),
    6: lambda: pathlib.Path("notes").mkdir() or pathlib.Path("notes/a.txt").write_text("x"),
    7: lambda: None,
}
actions[n]()
print("attempt", n)
"""


def test_out_of_scope_proposals_are_invalid_and_repo_unchanged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"prepare.py": "DATA = 1\n", "propose.py": PROPOSER},
                     toml=toy_toml(protected='["prepare.py"]', extra=STRICT))
    before = {p.name: p.read_text() for p in repo.iterdir() if p.is_file()}
    head = git(repo, "rev-parse", "HEAD")
    res = run_cli(repo, "run", "--tag", "bad", "--proposer", "command:./propose.py",
                  "--max-experiments", "7")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in ledger(repo, "bad")}
    expected = {1: "prepare.py", 2: "helper.py", 3: "program.md", 4: "prepare.py",
                5: "train2.py", 6: "notes/a.txt"}
    for exp_id, path in expected.items():
        assert rows[exp_id]["status"] == "invalid", rows[exp_id]
        assert "outside the mutable surface" in rows[exp_id]["reason"]
        assert path in rows[exp_id]["reason"]
    assert rows[7]["status"] == "invalid" and rows[7]["reason"] == "the proposal changed nothing"
    assert git(repo, "rev-parse", "autoresearch/bad").strip() == rows[0]["commit"]
    assert git(repo, "rev-parse", "HEAD") == head
    assert {p.name: p.read_text() for p in repo.iterdir() if p.is_file()} == before
    assert not (repo / "helper.py").exists() and not (repo / "notes").exists()
    # The rejected diff is still inspectable.
    assert "EVIL" in git(repo, "show", "refs/autoresearch/bad/discarded/1")


def test_dirty_tree_is_refused_and_left_alone(toy_repo: Path) -> None:
    train = toy_repo / "train.py"
    train.write_text(train.read_text() + "\n# my unsaved idea\n")
    res = run_cli(toy_repo, "run", "--tag", "d")
    assert res.returncode == 2
    assert "uncommitted changes" in res.stderr and "train.py" in res.stderr
    assert "git stash" in res.stderr
    assert train.read_text().endswith("# my unsaved idea\n")
    assert "autoresearch/d" not in git(toy_repo, "branch", "--list")


HANG = """#!/usr/bin/env python3
import pathlib
p = pathlib.Path("train.py")
p.write_text(p.read_text() + "\\nimport subprocess, time\\n"
             "subprocess.Popen(['sleep', '1000'])\\n"
             "time.sleep(1000)\\n")
print("hang forever")
"""


def test_hanging_run_with_grandchild_is_killed_at_timeout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": HANG},
                     toml=toy_toml(time_budget="1", timeout="3", extra=STRICT))
    res = run_cli(repo, "run", "--tag", "h", "--proposer", "command:./propose.py",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    row = ledger(repo, "h")[1]
    assert row["status"] == "timeout" and "timeout" in row["reason"]
    assert 3 <= row["run_seconds"] < 12
    assert processes_under(repo) == []


def test_checks_gate_a_keep(tmp_path: Path) -> None:
    # Passes on the baseline (checks run there first), fails once train.py changes.
    check = ("python -c \\\"import hashlib, sys; sys.exit(hashlib.sha256(open('train.py','rb')"
             f".read()).hexdigest() != '{sha256(TOY / 'train.py')}')\\\"")
    repo = make_repo(tmp_path / "r", toml=toy_toml(checks=f'["{check}"]', extra=STRICT))
    res = run_cli(repo, "run", "--tag", "c", "--max-experiments", "4")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "c")
    assert any(r["status"] == "checks_failed" for r in rows), [r["status"] for r in rows]
    assert [r["status"] for r in rows if r["status"] == "keep"] == ["keep"]  # baseline only


def test_checks_that_fail_on_the_baseline_stop_before_any_experiment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        checks='["python -c \\"import sys; sys.exit(1)\\""]', extra=STRICT))
    res = run_cli(repo, "run", "--tag", "b", "--max-experiments", "4")
    assert res.returncode == 1
    assert "on the unmodified baseline" in res.stderr and "check_env" in res.stderr
    assert not (repo / ".autoresearch" / "b" / "results.jsonl").exists() or \
        ledger(repo, "b") == []


DUP = """#!/usr/bin/env python3
import pathlib
p = pathlib.Path("train.py")
p.write_text(p.read_text().replace("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.01"))
print("lower the learning rate")
"""


def test_duplicate_state_is_not_run_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": DUP}, toml=toy_toml(extra=STRICT))
    res = run_cli(repo, "run", "--tag", "u", "--proposer", "command:./propose.py",
                  "--max-experiments", "2")
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "u")
    assert rows[1]["status"] == "discard"  # a lower LR is worse on the toy
    assert rows[2]["status"] == "duplicate" and "identical to experiment 1" in rows[2]["reason"]
    assert rows[2]["log"] == ""  # nothing ran


def test_crashing_baseline_stops_with_a_message(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(run='"python -c \\"raise SystemExit(4)\\""'))
    res = run_cli(repo, "run", "--tag", "b")
    assert res.returncode == 1
    assert "baseline did not produce val_loss" in res.stderr
    rows = ledger(repo, "b")
    assert rows[0]["status"] == "crash" and "exited with code 4" in rows[0]["reason"]


def test_status_and_report(toy_repo: Path) -> None:
    assert run_cli(toy_repo, "run", "--tag", "r", "--max-experiments", "3").returncode == 0
    status = run_cli(toy_repo, "status", "--tag", "r")
    assert status.returncode == 0
    assert "baseline" in status.stdout and "keep" in status.stdout
    assert "3 experiments" in status.stdout
    report = run_cli(toy_repo, "report")  # defaults to the most recent tag
    assert report.returncode == 0, report.stderr
    png = toy_repo / ".autoresearch" / "r" / "progress.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = run_cli(toy_repo, "status", "--tag", "nope")
    assert missing.returncode == 2 and "no ledger for tag 'nope'" in missing.stderr


def test_huge_output_is_read_from_its_tail(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        run='"yes noise | head -c 6000000; echo; python train.py"'))
    res = run_cli(repo, "run", "--tag", "big", "--max-experiments", "0")
    assert res.returncode == 0, res.stderr
    assert ledger(repo, "big")[0]["metric"] is not None
