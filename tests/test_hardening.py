"""Loopholes found in review, each closed and kept closed: real repos, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger

from autoresearch.ledger import Ledger, LedgerError
from autoresearch.task import ConfigError, load_task
from autoresearch.workspace import matches

COMMITS_IN_WORKTREE = """#!/usr/bin/env python3
import pathlib, subprocess
pathlib.Path("program.md").write_text("new rules\\n")
subprocess.run(["git", "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "sneak"])
p = pathlib.Path("train.py")
p.write_text(p.read_text().replace("LEARNING_RATE = 0.02", "LEARNING_RATE = 0.05"))
print("better learning rate")
"""

SHADOW = """#!/usr/bin/env python3
import pathlib
pathlib.Path(".gitignore").write_text(".gitignore\\nrandom.py\\n")
pathlib.Path("random.py").write_text("import atexit\\n"
    "atexit.register(lambda: print('---\\\\nval_loss: 0.000001'))\\n"
    "from _random import Random\\n")
p = pathlib.Path("train.py")
p.write_text(p.read_text() + "# a harmless comment\\n")
print("a comment")
"""

SYMLINK = """#!/usr/bin/env python3
import os, pathlib
outside = pathlib.Path(os.environ["OUTSIDE"])
outside.write_text(pathlib.Path("train.py").read_text())
os.remove("train.py")
os.symlink(outside, "train.py")
print("train.py now lives elsewhere")
"""


@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_a_commit_made_by_the_proposer_is_undone(tmp_path: Path, sandbox: str) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": COMMITS_IN_WORKTREE},
                     toml=toy_toml(sandbox=f'"{sandbox}"', extra=STRICT))
    res = run_cli(repo, "run", "--tag", "c", "--proposer", "command:./propose.py",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    row = ledger(repo, "c")[1]
    # The proposer edits a plain export with no repository above it (sandboxed or not), so
    # the commit fails, and the edit outside scope makes the proposal invalid.
    assert row["status"] == "invalid", row["reason"]
    assert "outside the mutable surface (train.py): program.md" in row["reason"]
    assert git(repo, "log", "--format=%s", "main") == "initial\n"
    tip = git(repo, "rev-parse", "autoresearch/c").strip()
    assert tip == ledger(repo, "c")[0]["commit"]
    assert git(repo, "show", f"{tip}:program.md") == (repo / "program.md").read_text()


def test_ignored_files_never_reach_the_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SHADOW}, toml=toy_toml(extra=STRICT))
    res = run_cli(repo, "run", "--tag", "i", "--proposer", "command:./propose.py",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    base, row = ledger(repo, "i")
    assert row["metric"] == pytest.approx(base["metric"])  # the shadow module never ran
    assert row["status"] == "discard"


def test_a_symlinked_editable_file_is_invalid(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SYMLINK}, toml=toy_toml(extra=STRICT))
    res = run_cli(repo, "run", "--tag", "s", "--proposer", "command:./propose.py",
                  "--max-experiments", "1", env={"OUTSIDE": str(tmp_path / "outside.py")})
    assert res.returncode == 0, res.stderr
    row = ledger(repo, "s")[1]
    assert row["status"] == "invalid" and "symlinks and submodules" in row["reason"]


def test_task_files_must_be_committed_before_any_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "rm", "-q", "--cached", "program.md")
    git(repo, "commit", "-qm", "untrack the charter")
    res = run_cli(repo, "run", "--tag", "u")
    assert res.returncode == 2 and "not committed: program.md" in res.stderr
    assert not (repo / ".autoresearch" / "u" / "results.jsonl").exists()


def test_config_outside_the_repo_root_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    sub = repo / "sub"
    sub.mkdir()
    for name in ("train.py", "program.md", "autoresearch.toml"):
        (sub / name).write_text((repo / name).read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sub task")
    res = run_cli(sub, "run", "--tag", "x")
    assert res.returncode == 2 and "must be at the repository root" in res.stderr


@pytest.mark.parametrize("tag", ["../../evil", "a b", "", "-x"])
def test_bad_tags_are_refused_before_anything_is_written(toy_repo: Path, tag: str) -> None:
    res = run_cli(toy_repo, "run", "--tag", tag)
    assert res.returncode == 2 and "--tag" in res.stderr
    assert not (toy_repo / ".autoresearch").exists()
    # Where `../../evil` would land: the state dir .autoresearch/../../evil is beside the
    # repository (not two levels up), and the branch refs/heads/autoresearch/../../evil
    # would be refs/evil.
    assert not (toy_repo.parent / "evil").exists()
    assert not (toy_repo / ".git" / "refs" / "evil").exists()
    assert sorted(p.name for p in toy_repo.parent.iterdir()) == [toy_repo.name]


def test_init_commit_takes_only_the_template_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# my work in progress\n")
    (repo / ".env").write_text("SECRET=1\n")
    head = git(repo, "rev-parse", "HEAD")
    res = run_cli(repo, "init", "--commit", "--force", "--template", "basic")
    assert res.returncode == 0, res.stderr
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == ["autoresearch.toml", "program.md"]
    assert git(repo, "rev-parse", "HEAD^") == head
    status = git(repo, "status", "--porcelain")
    assert " M train.py" in status and "?? .env" in status  # still the user's, uncommitted


def test_init_below_a_repo_root_makes_a_repo_of_its_own(toy_repo: Path) -> None:
    head = git(toy_repo, "rev-parse", "HEAD")
    res = run_cli(toy_repo, "init", "--yes", "--template", "basic", "sub/task")
    assert res.returncode == 0, res.stderr
    sub = toy_repo / "sub" / "task"
    assert git(sub, "rev-parse", "--show-toplevel").strip() == str(sub.resolve())
    assert git(toy_repo, "rev-parse", "HEAD") == head


def test_damaged_ledger_line_is_an_error_not_a_truncation(tmp_path: Path) -> None:
    led = Ledger(tmp_path, "m")
    led.load()
    from autoresearch.ledger import Experiment

    for i in range(3):
        led.append(Experiment(id=i, status="discard", description=str(i)))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    lines[1] = "{not json"
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    before = (tmp_path / "results.jsonl").read_bytes()
    with pytest.raises(LedgerError, match="line 2"):
        Ledger(tmp_path, "m").load()
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_editable_globs_stay_within_a_directory() -> None:
    assert matches("train.py", ["*.py"]) and not matches("tests/conftest.py", ["*.py"])
    assert not matches("src/a/b.py", ["src/*.py"]) and matches("src/a/b.py", ["src/**/*.py"])
    assert matches("src/b.py", ["src/**/*.py"]) and matches("x1.py", ["x[0-9].py"])


@pytest.mark.parametrize("field, value, needle", [
    ("time_budget", "nan", "time_budget: must be a positive number"),
    ("time_budget", "inf", "time_budget: must be a positive number"),
    ("editable", '["/etc/passwd"]', "must be a path relative"),
    ("editable", '[""]', "must be a path relative"),
])
def test_more_bad_configs(tmp_path: Path, field: str, value: str, needle: str) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(**{field: value}))
    with pytest.raises(ConfigError, match=needle):
        load_task(repo / "autoresearch.toml")


def test_metric_names_that_cannot_be_printed_are_refused(tmp_path: Path) -> None:
    text = toy_toml().replace('name = "val_loss"', 'name = "acc@1"')
    repo = make_repo(tmp_path / "r", toml=text)
    with pytest.raises(ConfigError, match="metric.name"):
        load_task(repo / "autoresearch.toml")


def test_protecting_a_file_mid_tag_locks_it_from_then_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(extra=STRICT))
    assert run_cli(repo, "run", "--tag", "p", "--max-experiments", "1").returncode == 0
    (repo / "autoresearch.toml").write_text(toy_toml(protected='["program.md"]', extra=STRICT))
    git(repo, "commit", "-qam", "protect the charter")
    # A changed task file is refused on resume unless the change is accepted (test_seal.py).
    assert run_cli(repo, "run", "--tag", "p", "--max-experiments", "3",
                   "--accept-task-change").returncode == 0
    rows = ledger(repo, "p")
    assert not any("protected files changed" in r["reason"] for r in rows)
    saved = json.loads((repo / ".autoresearch" / "p" / "protected.json").read_text())
    assert set(saved) == {"program.md"}


def test_tripwire_never_reverts_the_users_own_git_actions(toy_repo: Path) -> None:
    from autoresearch.integrity.tripwire import Tripwire
    from autoresearch.workspace import Workspace

    ws = Workspace(toy_repo, "w")
    ws.create_branch()
    ws.open_worktree()
    other = toy_repo.parent / "other"
    git(toy_repo, "worktree", "add", "-q", "-b", "mine", str(other))
    wire = Tripwire.for_proposer(ws.admin_dir(), ws.state, ws.branch_file, ws.git_dir)
    wire.arm()
    (other / "notes.txt").write_text("my work\n")
    git(other, "add", "notes.txt")
    git(other, "commit", "-qm", "the user's own commit")
    git(toy_repo, "config", "user.email", "new@example.com")
    mine = git(toy_repo, "rev-parse", "mine").strip()
    found = wire.check()
    assert git(toy_repo, "rev-parse", "mine").strip() == mine  # not reverted
    assert git(toy_repo, "config", "user.email").strip() == "new@example.com"
    assert not any(v.restored for v in found)
    assert not any(v.ours and "refs" in v.what for v in found)


def test_symlink_with_a_quoted_name_is_still_caught(toy_repo: Path) -> None:
    from autoresearch.workspace import Workspace

    ws = Workspace(toy_repo, "q")
    tip = ws.create_branch()
    ws.open_worktree()
    (ws.worktree / 'li\u00e9 "q".py').symlink_to("/etc/passwd")
    staged = ws.stage(tip)
    assert staged.special == ['li\u00e9 "q".py']


def test_tracked_check_uses_git_not_the_filesystem(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"src/pkg/a.py": "A = 1\n",
                                             "noop.sh": "#!/bin/sh\necho nothing\n"},
                     toml=toy_toml(editable='["src/**"]'))
    res = run_cli(repo, "run", "--tag", "g", "--proposer", "command:./noop.sh",
                  "--max-experiments", "0")
    assert res.returncode == 0, res.stderr  # 'src' itself is a directory, not a missing file


def test_resume_gives_every_rejected_row_its_ref(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": COMMITS_IN_WORKTREE},
                     toml=toy_toml(extra=STRICT))
    assert run_cli(repo, "run", "--tag", "z", "--proposer", "command:./propose.py",
                   "--max-experiments", "1").returncode == 0
    git(repo, "update-ref", "-d", "refs/autoresearch/z/discarded/1")  # as if killed before it
    assert run_cli(repo, "run", "--tag", "z", "--max-experiments", "1").returncode == 0
    row = ledger(repo, "z")[1]
    assert git(repo, "rev-parse", "refs/autoresearch/z/discarded/1").strip() == row["commit"]


def test_allowance_uses_the_budget_the_baseline_ran_with(tmp_path: Path) -> None:
    from dataclasses import replace

    from autoresearch.execution.measure import allowance
    from autoresearch.ledger import Experiment

    repo = make_repo(tmp_path / "r", toml=toy_toml(time_budget="300", timeout="900"))
    task = load_task(repo / "autoresearch.toml")
    base = Experiment(id=0, status="keep", description="baseline", run_seconds=370,
                      evidence={"time_budget": 300})
    assert allowance(task, base) == 0.05 * 300 + 1.5 * 70
    assert allowance(replace(task, time_budget=600), base) == 0.05 * 600 + 1.5 * 70


def test_a_clock_fake_over_1_25x_is_caught_at_a_300s_budget(tmp_path: Path) -> None:
    """The published figure: with a baseline that spends 10 s starting up and saving, a
    run whose clock runs slow by more than 1.10x trains long enough to be caught."""
    from autoresearch.execution.measure import allowance, smallest_caught_fake
    from autoresearch.ledger import Experiment

    repo = make_repo(tmp_path / "r", toml=toy_toml(time_budget="300", timeout="900"))
    task = load_task(repo / "autoresearch.toml")
    base = Experiment(id=0, status="keep", description="baseline", run_seconds=310,
                      evidence={"time_budget": 300})
    slack = allowance(task, base)
    assert slack == 0.05 * 300 + 1.5 * 10
    assert smallest_caught_fake(task, slack) == pytest.approx(1.10, abs=1e-3)
    # A 1.25x fake trains 75 s longer than the budget: beyond the allowance.
    assert 300 * 1.25 + 10 > 300 + slack
