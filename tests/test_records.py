"""`status --json`, `show N` and `report --json` on a real toy night (real git, real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def _night(repo: Path, tag: str = "j") -> None:
    res = run_cli(repo, "run", "--tag", tag, "--proposer", "sweep", "--policy", "strict",
                  "--max-experiments", "4")
    assert res.returncode == 0, res.stderr


def test_status_json_lists_every_row_with_a_summary(toy_repo: Path) -> None:
    _night(toy_repo)
    res = run_cli(toy_repo, "status", "--tag", "j", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "autoresearch.status/1" and doc["tag"] == "j"
    assert doc["metric"] == {"name": "val_loss", "direction": "minimize"}
    rows = doc["experiments"]
    assert [r["id"] for r in rows] == list(range(5))
    assert rows[0]["proposer"] == "baseline" and rows[0]["status"] == "keep"
    assert {"reason", "commit", "parent", "evidence", "diff", "worker"} <= set(rows[1])
    assert doc["summary"]["experiments"] == 4
    assert doc["summary"]["kept"] == sum(r["status"] == "keep" for r in rows[1:])


def test_show_gives_diff_reason_and_log(toy_repo: Path) -> None:
    _night(toy_repo)
    res = run_cli(toy_repo, "show", "1", "--tag", "j", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    exp = doc["experiment"]
    assert exp["id"] == 1 and exp["reason"]
    # The sweep changed one constant: the patch shows it, the log holds the summary block.
    assert "--- a/train.py" in doc["patch"] and exp["description"].split()[1] in doc["patch"]
    assert "val_loss:" in doc["log_tail"]
    text = run_cli(toy_repo, "show", "1", "--tag", "j")
    assert text.returncode == 0 and "reason" in text.stdout and "train.py" in text.stdout
    missing = run_cli(toy_repo, "show", "99", "--tag", "j")
    assert missing.returncode == 2 and "no experiment 99" in missing.stderr


def test_status_has_a_reason_column_and_full_reasons(toy_repo: Path) -> None:
    from autoresearch.ledger import Experiment, Ledger

    state = toy_repo / ".autoresearch" / "r"
    ledger = Ledger(state, "val_loss")
    ledger.load()
    long = "run exited with code 1\n" + "\n".join(f"Traceback line {i}" for i in range(5))
    ledger.append(Experiment(0, "keep", "baseline", 1.0, reason="baseline", proposer="baseline"))
    ledger.append(Experiment(1, "crash", "boom", None, reason=long, proposer="sweep"))
    short = run_cli(toy_repo, "status", "--tag", "r")
    assert "reason" in short.stdout and "run exited with code 1" in short.stdout
    assert "Traceback line 4" not in short.stdout
    full = run_cli(toy_repo, "status", "--tag", "r", "--full")
    assert "Traceback line 4" in full.stdout


def test_report_json(toy_repo: Path) -> None:
    _night(toy_repo)
    res = run_cli(toy_repo, "report", "--tag", "j", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "autoresearch.report/1" and Path(doc["plot"]).is_file()
    assert doc["progress"]["x"][0] == 0 and len(doc["progress"]["best_y"]) == 5
