"""The sweep proposer finds constants by AST and rewrites only their literals."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_repo, toy_toml

from autoresearch.proposers import make_proposer
from autoresearch.proposers.base import Context
from autoresearch.proposers.sweep import find_constants, rewrite
from autoresearch.task import ConfigError, load_task

SRC = '''"""doc"""
import os
LEARNING_RATE = 0.04  # matrix lr
DEPTH = 8
USE_VE = True
NAME = "SSSL"
BIAS = -0.5
lower_case = 3
TUPLE = (1, 2)
def f():
    INNER = 3
'''


def test_find_constants() -> None:
    found = find_constants(SRC)
    assert {k: c.value for k, c in found.items()} == {
        "LEARNING_RATE": 0.04, "DEPTH": 8, "USE_VE": True, "NAME": "SSSL", "BIAS": -0.5}


def test_rewrite_touches_only_the_literal() -> None:
    found = find_constants(SRC)
    out = rewrite(SRC, found["LEARNING_RATE"], 0.05)
    assert "LEARNING_RATE = 0.05  # matrix lr\n" in out
    out = rewrite(out, find_constants(out)["BIAS"], -0.25)
    assert "BIAS = -0.25\n" in out
    assert out.replace("0.05", "0.04").replace("-0.25", "-0.5") == SRC


def context(repo: Path, exp_id: int) -> Context:
    task = load_task(repo / "autoresearch.toml")
    return Context(experiment_id=exp_id, workdir=repo, program="", files={},
                   editable=task.editable, metric=task.metric, time_budget=10, history=())


def test_explicit_space_limits_what_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(
        extra='[proposer.sweep]\nchanges = 1\nSTEPS = { low = 300, high = 400 }\n'))
    task = load_task(repo / "autoresearch.toml")
    prop = make_proposer("sweep", task, {})
    prop.setup([])
    before = (repo / "train.py").read_text()
    proposal = prop.propose(context(repo, 1))
    after = (repo / "train.py").read_text()
    assert proposal.description.startswith("sweep: STEPS 150 -> ")
    new = find_constants(after)["STEPS"].value
    assert isinstance(new, int) and 300 <= new <= 400
    assert proposal.meta == {"params": {"STEPS": new}}
    changed = [a for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == ["STEPS = 150"]


def test_unknown_sweep_option_and_missing_constant(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(extra="[proposer.sweep]\ntrials = 3\n"))
    with pytest.raises(ConfigError, match="proposer.sweep.trials"):
        make_proposer("sweep", load_task(repo / "autoresearch.toml"), {})
    repo2 = make_repo(tmp_path / "r2", toml=toy_toml(
        extra='[proposer.sweep]\nNOPE = [1, 2]\n'))
    prop = make_proposer("sweep", load_task(repo2 / "autoresearch.toml"), {})
    with pytest.raises(Exception, match="NOPE not found"):
        prop.setup([])
