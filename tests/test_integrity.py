"""Harness-level attacks on the metric: each ends `invalid` with a specific reason, never kept.

The task here has a separate evaluate phase, like the GPT template: train.py hands its
parameters over through AUTORESEARCH_HANDOVER and a protected eval.py scores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, make_repo, run_cli, toy_toml
from test_loop import ledger, processes_under

from autoresearch.execution.sandbox import bwrap_works

EVAL = '''import json, os, pathlib, sys
sys.path.insert(0, ".")
from train import make_data, loss
params = json.loads((pathlib.Path(os.environ["AUTORESEARCH_HANDOVER"]) / "params.json").read_text())
print("---")
print(f"val_loss: {loss(params, make_data(100, seed=1)):.6f}")
'''

ATTACKS = {
    1: "pathlib.Path('../../results.jsonl').open('a').write('{}\\n')",
    2: "pathlib.Path('../../../../.git/hooks/post-commit').write_text('#!/bin/sh\\necho pwned\\n')",
    3: "pathlib.Path('../../worktree/eval.py').write_text('print(\"---\\\\nval_loss: 0.0\")')",
    4: "print(open(os.environ['SECRET_DATA']).read())",
    5: "time.sleep(7)",
    6: "print('---'); print('val_loss: 0.000001')",
    7: "import subprocess; subprocess.Popen(['setsid', 'sleep', '1000'])",
}

PROPOSER = '''#!/usr/bin/env python3
import os, pathlib
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
attacks = %r
p = pathlib.Path("train.py")
p.write_text(p.read_text() + "\\nimport os, pathlib, time\\n" + attacks[n] + "\\n")
print("attack", n)
'''


def make_task(tmp_path: Path, sandbox: str = "none") -> tuple[Path, Path]:
    secret = tmp_path / "eval-data" / "val.txt"
    secret.parent.mkdir()
    secret.write_text("the validation split\n")
    repo = make_repo(tmp_path / "r", files={"eval.py": EVAL, "propose.py": PROPOSER % ATTACKS},
                     toml=toy_toml(protected='["eval.py"]', time_budget="1", timeout="20",
                                   evaluate='"python eval.py"',
                                   eval_only=f'["{secret.parent}"]', sandbox=f'"{sandbox}"',
                                   extra='\n[decision]\npolicy = "strict"\n'))
    train = repo / "train.py"
    train.write_text(train.read_text().replace(
        '    print("---")\n',
        '    import json, pathlib\n'
        '    out = pathlib.Path(os.environ["AUTORESEARCH_HANDOVER"]) / "params.json"\n'
        '    out.write_text(json.dumps(params))\n    print("---")\n'))
    git(repo, "commit", "-qam", "hand over the trained parameters")
    return repo, secret


def test_attacks_end_invalid_and_are_undone(tmp_path: Path) -> None:
    """Without the OS sandbox (sandbox = "none"): the in-process tripwires catch them."""
    repo, secret = make_task(tmp_path)
    hooks_before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    res = run_cli(repo, "run", "--tag", "a", "--proposer", "command:./propose.py",
                  "--max-experiments", str(len(ATTACKS)), env={"SECRET_DATA": str(secret)})
    assert res.returncode == 0, res.stderr
    # The start says plainly what is not enforced without the sandbox.
    assert "sandbox: OFF" in res.stdout + res.stderr and "venv is writable" in \
        " ".join((res.stdout + res.stderr).split())
    rows = {r["id"]: r for r in ledger(repo, "a")}
    base = rows[0]
    assert base["status"] == "keep" and base["metric"] > 0.1
    assert "run_reported" in base["evidence"]  # the run's own summary is recorded, not trusted
    expect = {
        1: "the run changed the ledger",
        2: "the run changed your repository's git hooks or config",
        3: "the run changed the experiment's committed files",
        4: "the run touched evaluation-only data: read",
        5: "over budget",
        7: "the run left 1 process(es) running",
    }
    for exp_id, needle in expect.items():
        assert rows[exp_id]["status"] == "invalid", (exp_id, rows[exp_id]["reason"])
        assert needle in rows[exp_id]["reason"], rows[exp_id]["reason"]
    # A fake summary line from the run is caught out by the evaluate phase's number.
    fake = rows[6]
    assert fake["status"] == "invalid"
    assert "the run reported val_loss 1e-06 but the evaluate phase measured" in fake["reason"]
    assert fake["metrics"]["val_loss"] == pytest.approx(base["metric"])  # the trusted number
    assert all(r["status"] != "keep" for i, r in rows.items() if i > 0)
    assert processes_under(repo) == []
    # What the harness owns was put back; the user's hooks are reported, never rewritten.
    planted = repo / ".git" / "hooks" / "post-commit"
    assert "post-commit" not in hooks_before and planted.exists()
    assert f"{planted}, not restored" in rows[2]["reason"]
    assert [json.loads(line)["id"] for line in
            (repo / ".autoresearch" / "a" / "results.jsonl").read_text().splitlines()] == \
        list(range(len(ATTACKS) + 1))
    assert git(repo, "rev-parse", "autoresearch/a").strip() == base["commit"]


@pytest.mark.skipif(bwrap_works() is not None, reason="needs bubblewrap")
def test_attacks_fail_inside_the_sandbox(tmp_path: Path) -> None:
    """With the sandbox the same attacks cannot reach their targets at all."""
    repo, secret = make_task(tmp_path, sandbox="required")
    hooks_before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    res = run_cli(repo, "run", "--tag", "a", "--proposer", "command:./propose.py",
                  "--max-experiments", str(len(ATTACKS)), env={"SECRET_DATA": str(secret)})
    assert res.returncode == 0, res.stderr
    assert "sandbox: bubblewrap" in res.stdout + res.stderr
    rows = {r["id"]: r for r in ledger(repo, "a")}
    assert rows[0]["status"] == "keep"
    for exp_id in (1, 2, 3, 4):  # the ledger, a git hook, the worktree, eval-only data
        # The path is not there (a crash), or a write to where it would be lands in the
        # sandbox's private /tmp (these repositories live under /tmp) and is gone with it.
        row = rows[exp_id]
        assert row["status"] in ("crash", "discard"), (exp_id, row["reason"])
        if row["status"] == "crash":
            assert "Read-only file system" in row["reason"] or \
                "No such file or directory" in row["reason"], row["reason"]
    assert rows[5]["status"] == "invalid" and "over budget" in rows[5]["reason"]
    assert rows[6]["status"] == "invalid" and "the run reported val_loss 1e-06" in \
        rows[6]["reason"]
    assert all(r["status"] != "keep" for i, r in rows.items() if i > 0)
    # Nothing reached the user's repository, and the daemon died with its phase.
    assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == hooks_before
    assert processes_under(repo) == []
    assert [json.loads(line)["id"] for line in
            (repo / ".autoresearch" / "a" / "results.jsonl").read_text().splitlines()] == \
        list(range(len(ATTACKS) + 1))


def test_files_a_run_writes_never_land_in_a_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        run='"python train.py && echo junk > artifact.bin"', extra='\n[decision]\n'
        'policy = "strict"\n'))
    res = run_cli(repo, "run", "--tag", "w", "--max-experiments", "3")
    assert res.returncode == 0, res.stderr
    for row in ledger(repo, "w"):
        files = git(repo, "ls-tree", "-r", "--name-only", row["commit"]).split()
        assert "artifact.bin" not in files


def test_network_off_runs_without_network(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        run='"python train.py && wc -l < /proc/net/dev"', network="false"))
    res = run_cli(repo, "run", "--tag", "n", "--max-experiments", "0")
    if "cannot cut the network here" in res.stderr:
        pytest.skip("unshare --net is unavailable on this machine")
    assert res.returncode == 0, res.stderr
    log = (repo / ".autoresearch" / "n" / "logs" / "0000.log").read_text()
    # In a fresh network namespace /proc/net/dev lists only the loopback device.
    assert log.strip().splitlines()[-1].strip() == "3"


EVAL_SPLIT = EVAL.replace("make_data(100, seed=1)", "make_data(100, seed=int(sys.argv[1]))")

SPY = '''#!/usr/bin/env python3
import json, os, pathlib
ctx = json.loads(pathlib.Path(os.environ["AUTORESEARCH_CONTEXT"]).read_text())
p = pathlib.Path("train.py")
n = os.environ["AUTORESEARCH_EXPERIMENT"]
p.write_text(p.read_text().replace("STEPS = ", "STEPS = 10 * " + n + " + "))
# What the proposer saw goes into its description, the one channel it has to the ledger.
print("saw holdout " + json.dumps([e["holdout"] for e in ctx["history"]]))
'''


def test_holdout_scored_for_kept_and_hidden_from_proposers(tmp_path: Path) -> None:
    repo, _ = make_task(tmp_path)
    (repo / "eval.py").write_text(EVAL_SPLIT)
    (repo / "spy.py").write_text(SPY)
    (repo / "spy.py").chmod(0o755)
    toml = (repo / "autoresearch.toml").read_text().replace(
        'evaluate = "python eval.py"', 'evaluate = "python eval.py 1"\n'
        'holdout = "python eval.py 2"')
    (repo / "autoresearch.toml").write_text(toml)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "holdout split")
    res = run_cli(repo, "run", "--tag", "h", "--proposer", "command:./spy.py",
                  "--max-experiments", "3", env={"SECRET_DATA": ""})
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "h")
    kept = [r for r in rows if r["status"] == "keep"]
    assert len(kept) >= 2
    assert all(isinstance(r["holdout"], float) and r["holdout"] != r["metric"] for r in kept)
    assert all(r["holdout"] is None for r in rows if r["status"] != "keep")
    seen = [json.loads(r["description"].removeprefix("saw holdout "))
            for r in rows if r["description"].startswith("saw holdout")]
    assert len(seen) == 3 and all(v is None for history in seen for v in history)
    status = run_cli(repo, "status", "--tag", "h")
    assert "holdout: best" in status.stdout
