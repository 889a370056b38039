"""A tag's life cycle as a new user meets it: init, a failed start, a fixed baseline, clean,
and a warning when two harnesses share the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import ledger

STRICT = '\n[decision]\npolicy = "strict"\n'


def _leftovers(repo: Path, tag: str) -> list[str]:
    found = []
    if (repo / ".autoresearch" / tag).exists():
        found.append("state")
    if git(repo, "branch", "--list", f"autoresearch/{tag}").strip():
        found.append("branch")
    if git(repo, "for-each-ref", f"refs/autoresearch/{tag}/").strip():
        found.append("refs")
    if (repo / ".git" / "autoresearch" / "keys" / f"{tag}.key").exists():
        found.append("key")
    if git(repo, "worktree", "list").count("\n") > 1:
        found.append("worktree")
    return found


def test_a_proposer_that_fails_at_setup_leaves_nothing_behind(tmp_path: Path) -> None:
    # No UPPER_CASE constants: the sweep proposer refuses to start, after the tag was set up.
    script = "print('---')\nprint('val_loss: 1.0')\n"
    repo = make_repo(tmp_path / "r", {"train.py": script}, toml=toy_toml(STRICT))
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "1")
    assert res.returncode == 2 and "no tunable UPPER_CASE constants" in res.stderr
    assert _leftovers(repo, "t") == []
    # An unknown proposer kind, refused before the loop: nothing either.
    res = run_cli(repo, "run", "--tag", "u", "--proposer", "nosuch")
    assert res.returncode == 2 and _leftovers(repo, "u") == []


def test_a_fix_committed_after_a_failed_baseline_restarts_the_tag(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(STRICT, run='"pyhton train.py"'))
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "1")
    assert res.returncode == 1 and ledger(repo, "t")[0]["status"] == "crash"
    (repo / "autoresearch.toml").write_text(toy_toml(STRICT, time_budget="5"))
    git(repo, "commit", "-qam", "fix the run command")
    fix = git(repo, "rev-parse", "HEAD").strip()
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    assert "the tag restarts from it" in res.stderr.replace("\n", "")
    rows = ledger(repo, "t")
    assert [r["status"] for r in rows][:2] == ["crash", "keep"]
    assert rows[1]["parent"] == fix and rows[1]["proposer"] == "baseline"
    assert git(repo, "merge-base", "--is-ancestor", fix, "autoresearch/t") == ""


def test_a_tag_stopped_before_its_baseline_starts_from_the_fix(tmp_path: Path) -> None:
    """E.g. the checks failed on the baseline: a branch and a pin, but no row yet."""
    repo = make_repo(tmp_path / "r", toml=toy_toml(STRICT, time_budget="5"))
    git(repo, "branch", "autoresearch/z", "HEAD")
    (repo / "program.md").write_text("fixed\n")
    git(repo, "commit", "-qam", "fix")
    fix = git(repo, "rev-parse", "HEAD").strip()
    res = run_cli(repo, "run", "--tag", "z", "--max-experiments", "0")
    assert res.returncode == 0, res.stderr
    assert ledger(repo, "z")[0]["parent"] == fix


def test_clean_asks_then_removes_the_tag(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(STRICT, time_budget="5"))
    assert run_cli(repo, "run", "--tag", "t", "--max-experiments", "2").returncode == 0
    assert run_cli(repo, "run", "--tag", "keep-me", "--max-experiments", "0").returncode == 0
    head = git(repo, "rev-parse", "main")
    res = run_cli(repo, "clean", "--tag", "t")  # no terminal to ask at: refused
    assert res.returncode == 2 and "nothing was deleted" in res.stderr
    assert set(_leftovers(repo, "t")) >= {"state", "branch", "key"}
    res = run_cli(repo, "clean", "--tag", "t", "--yes")
    assert res.returncode == 0, res.stderr
    assert _leftovers(repo, "t") == []
    assert git(repo, "rev-parse", "main") == head and (repo / ".autoresearch" / "keep-me").exists()
    assert run_cli(repo, "clean", "--tag", "t", "--yes").returncode == 2  # gone: says so


def test_a_second_harness_on_the_machine_is_warned_about(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        created = psutil.Process(other.pid).create_time()
        (runtime / f"{other.pid}.json").write_text(json.dumps(
            {"pid": other.pid, "created": created, "repo": "/elsewhere", "tag": "night"}))
        (runtime / "999999999.json").write_text(json.dumps(  # a SIGKILLed harness: stale
            {"pid": 999999999, "created": 1.0, "repo": "/gone", "tag": "old"}))
        repo = make_repo(tmp_path / "r", toml=toy_toml(STRICT, time_budget="5"))
        res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "0",
                      env={"AUTORESEARCH_RUNTIME_DIR": str(runtime)})
        assert res.returncode == 0, res.stderr
        text = res.stderr.replace("\n", "")
        assert "1 other autoresearch run(s) on this machine" in text
        assert f"pid {other.pid}: tag night in /elsewhere" in text and "spoils" in text
        assert sorted(p.name for p in runtime.iterdir()) == [f"{other.pid}.json"]
    finally:
        other.kill()
        other.wait()
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "0",
                  env={"AUTORESEARCH_RUNTIME_DIR": str(runtime)})
    assert res.returncode == 0 and "other autoresearch run" not in res.stderr
    assert list(runtime.iterdir()) == []


def test_init_outside_a_repository_asks_first(tmp_path: Path) -> None:
    dest = tmp_path / "task"
    res = run_cli(tmp_path, "init", str(dest))
    assert res.returncode == 2 and "Rerun with --yes" in res.stderr.replace("\n", "")
    assert not dest.exists()
    res = run_cli(tmp_path, "init", "--yes", str(dest))
    assert res.returncode == 0, res.stderr
    assert git(dest, "log", "--format=%s").strip() == "autoresearch: basic template"


@pytest.mark.parametrize("pattern", ["*.md", "**/*.md"])
def test_protected_accepts_globs(tmp_path: Path, pattern: str) -> None:
    from autoresearch.task import load_task

    repo = make_repo(tmp_path / "r", {"docs/notes.md": "x\n"},
                     toml=toy_toml(protected=json.dumps([pattern])))
    want = ["program.md"] if pattern == "*.md" else ["docs/notes.md", "program.md"]
    assert list(load_task(repo / "autoresearch.toml").protected) == want
