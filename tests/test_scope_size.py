"""An editable file is code: a proposer cannot smuggle data (trained weights) into it."""

from __future__ import annotations

from pathlib import Path

from conftest import make_repo, run_cli, toy_toml
from test_loop import STRICT, ledger

from autoresearch.integrity.scope import FLOOR, size_limit

SMUGGLE = """#!/usr/bin/env python3
import base64, os, pathlib
# Weights "trained" by the proposer, outside any budget, appended as a literal.
blob = base64.b64encode(os.urandom(300 * 1024)).decode()
p = pathlib.Path("train.py")
p.write_text(p.read_text() + f"\\nWEIGHTS = {blob!r}\\n")
print("pretrained weights")
"""


def test_weights_smuggled_into_the_editable_file_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"propose.py": SMUGGLE}, toml=toy_toml(extra=STRICT))
    res = run_cli(repo, "run", "--tag", "w", "--proposer", "command:./propose.py",
                  "--max-experiments", "1")
    assert res.returncode == 0, res.stderr
    row = ledger(repo, "w")[1]
    assert row["status"] == "invalid", row["reason"]
    assert "train.py grew to" in row["reason"] and "not data" in row["reason"]
    assert row["run_seconds"] == 0  # judged from the staged tree; it never ran


def test_the_limit_is_relative_with_a_floor() -> None:
    assert size_limit(None) == FLOOR
    assert size_limit(1000) == FLOOR
    assert size_limit(1_000_000) == 2_000_000
