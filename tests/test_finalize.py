"""`autoresearch finalize`: the review branch (real git), REPORT.md, --confirm and --ablate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli

from autoresearch.ledger import Experiment, Ledger
from autoresearch.review.branch import build


def _tree(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}").strip()


def _commit(repo: Path, parent: str, files: dict[str, str], msg: str) -> str:
    """A commit of `parent`'s tree with `files` replaced, made without touching HEAD."""
    env_index = repo / ".git" / "test-index"
    env = {"GIT_INDEX_FILE": str(env_index), "PATH": "/usr/bin:/bin",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, input=stdin, check=True,
                              capture_output=True, text=True).stdout.strip()

    run("read-tree", parent)
    for name, text in files.items():
        blob = run("hash-object", "-w", "--stdin", stdin=text)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
    return run("commit-tree", run("write-tree"), "-p", parent, "-m", msg)


CONSTS = "A = 1\nB = 2\nC = 3\n"


def _night(tmp_path: Path) -> tuple[Path, list[Experiment], list[str]]:
    """Kept: 1 sets A (later undone by 3), 2 sets B then 4 sets B again (superseded), 3
    puts A back and sets C. Discarded rows are left out: only kept ones shape the branch."""
    repo = make_repo(tmp_path / "repo", {"consts.py": CONSTS})
    base = git(repo, "rev-parse", "HEAD").strip()
    c0 = _commit(repo, base, {}, "baseline")
    c1 = _commit(repo, c0, {"consts.py": "A = 10\nB = 2\nC = 3\n"}, "A 10")
    c2 = _commit(repo, c1, {"consts.py": "A = 10\nB = 20\nC = 3\n"}, "B 20")
    c3 = _commit(repo, c2, {"consts.py": "A = 1\nB = 20\nC = 30\n"}, "A back, C 30")
    c4 = _commit(repo, c3, {"consts.py": "A = 1\nB = 25\nC = 30\n"}, "B 25")
    commits = [c0, c1, c2, c3, c4]
    rows = [Experiment(0, "keep", "baseline", 1.0, commit=c0, parent=base, proposer="baseline")]
    for i, (desc, value) in enumerate([("A 10", 0.9), ("B 20", 0.8), ("A back, C 30", 0.7),
                                       ("B 25", 0.6)], 1):
        rows.append(Experiment(i, "keep", desc, value, commit=commits[i],
                               parent=commits[i - 1], proposer="test",
                               evidence={"policy": "strict", "samples": [value]}))
    return repo, rows, commits


def test_review_branch_squashes_undone_changes_and_ends_at_the_best_tree(
        tmp_path: Path) -> None:
    repo, rows, commits = _night(tmp_path)
    review = build(repo, rows, "t", "val_loss")
    assert _tree(repo, "autoresearch/t-review") == _tree(repo, commits[-1]) == review.tree
    assert review.squashed == (1,)  # A 10 was put back by 3
    assert [exp for exp, _ in review.commits] == [2, 3, 4]
    log = git(repo, "log", "--format=%s", "autoresearch/t-review").split("\n")
    assert log[:4] == ["B 25", "A back, C 30", "B 20", "initial"]
    # Experiment 3's review commit no longer shows A's churn, only C.
    three = dict(review.commits)[3]
    diff = git(repo, "show", "--format=", "-U0", three)
    assert "+C = 30" in diff and "A = " not in diff
    body = git(repo, "log", "-1", "--format=%B", dict(review.commits)[4])
    assert "val_loss: 0.700000 -> 0.600000 (-0.100000)" in body
    assert "experiment 4 of tag t" in body


def test_review_branch_is_not_replaced_without_force(tmp_path: Path) -> None:
    repo, rows, _ = _night(tmp_path)
    build(repo, rows, "t", "val_loss")
    git(repo, "branch", "-f", "autoresearch/t-review", "HEAD")  # the user moved it
    with pytest.raises(Exception, match="--force"):
        build(repo, rows, "t", "val_loss")
    build(repo, rows, "t", "val_loss", force=True)
    assert _tree(repo, "autoresearch/t-review") == _tree(repo, rows[-1].commit)


@pytest.mark.slow
def test_finalize_a_real_night_with_confirm_and_ablate(toy_repo: Path) -> None:
    res = run_cli(toy_repo, "run", "--tag", "f", "--proposer", "sweep", "--policy", "strict",
                  "--max-experiments", "5")
    assert res.returncode == 0, res.stderr
    state = toy_repo / ".autoresearch" / "f"
    ledger_bytes = (state / "results.jsonl").read_bytes()
    tip = git(toy_repo, "rev-parse", "autoresearch/f").strip()
    rows = Ledger(state, "val_loss").read()
    kept = [e for e in rows if e.status == "keep"]

    res = run_cli(toy_repo, "finalize", "--tag", "f", "--confirm", "2", "--ablate")
    assert res.returncode == 0, res.stderr
    assert _tree(toy_repo, "autoresearch/f-review") == _tree(toy_repo, kept[-1].commit)
    n = len(git(toy_repo, "rev-list", "autoresearch/f-review", f"^{kept[0].parent}").split())
    assert n == len(kept) - 1  # one per kept change (nothing undone in a sweep here)
    report = (state / "REPORT.md").read_text()
    for heading in ("## Setup", "## Result", "## Kept changes", "## Confirmation",
                    "## Ablation", "## Discards and failures", "## Time and cost",
                    "## Caveats"):
        assert heading in report
    assert "(n=2)" in report and (state / "progress.png").is_file()
    # Re-runs never write the night's record, move its branch or leave a worktree behind.
    assert (state / "results.jsonl").read_bytes() == ledger_bytes
    assert git(toy_repo, "rev-parse", "autoresearch/f").strip() == tip
    assert not (state / "worktree").exists()  # removed, as the loop leaves it
    assert run_cli(toy_repo, "run", "--tag", "f", "--proposer", "sweep", "--policy", "strict",
                   "--max-experiments", "6").returncode == 0  # and the tag resumes


def test_confirm_reruns_under_the_budget_the_night_ran_with(toy_repo: Path) -> None:
    assert run_cli(toy_repo, "run", "--tag", "b", "--proposer", "sweep", "--policy", "strict",
                   "--time-budget", "3", "--max-experiments", "1").returncode == 0
    res = run_cli(toy_repo, "finalize", "--tag", "b", "--confirm", "1")
    assert res.returncode == 0, res.stderr
    assert "re-runs use the night's 3s budget (the task file says 10s)" in res.stdout + res.stderr
    report = (toy_repo / ".autoresearch" / "b" / "REPORT.md").read_text()
    assert "budget 3 s" in report.split("## Setup", 1)[1].split("\n## ", 1)[0]
