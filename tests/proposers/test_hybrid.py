"""The hybrid proposer against a real HTTP server on 127.0.0.1 with scripted answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import make_repo, run_cli, toy_toml

from autoresearch.ledger import Experiment
from autoresearch.proposers import make_proposer
from autoresearch.proposers.base import Context
from autoresearch.proposers.hybrid import HybridProposer
from autoresearch.proposers.sweep import find_constants
from autoresearch.task import ConfigError, MetricSpec, TaskSpec

from .proposer_fixtures import PROGRAM, ChatServer, openai_answer

TRAIN = '"""Toy."""\nLR = 10.0\nWARMUP = 0.5\n\n\ndef train():\n    return LR * WARMUP\n'
BASELINE = Experiment(id=0, status="keep", description="baseline", metric=3.0,
                      proposer="baseline")
Complete = optuna.trial.TrialState.COMPLETE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    (wd / "train.py").write_text(TRAIN)
    return wd


def task(root: Path, sweep: dict[str, Any] | None = None) -> TaskSpec:
    return TaskSpec(root=root, editable=("train.py",), protected=(), run="python train.py",
                    metric=MetricSpec("val_loss", "minimize"), time_budget=60.0, timeout=120.0,
                    proposer={"kind": "hybrid", "sweep": sweep if sweep is not None else
                              {"LR": {"low": 1e-3, "high": 1e3, "log": True}}})


def context(root: Path, exp_id: int, history: tuple[Experiment, ...] = (BASELINE,)) -> Context:
    return Context(experiment_id=exp_id, workdir=root, program=PROGRAM,
                   files={"train.py": (root / "train.py").read_text()}, editable=("train.py",),
                   metric=MetricSpec("val_loss", "minimize"), time_budget=60.0, history=history)


def build(root: Path, server: ChatServer, monkeypatch: pytest.MonkeyPatch,
          history: tuple[Experiment, ...] = (BASELINE,), **options: Any) -> HybridProposer:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    opts = {"model": "test-model", "base_url": server.url, "api_key_env": "TEST_LLM_KEY",
            "backoff": 0.01, "prices": {"test-model": [3.0, 15.0]}, **options}
    proposer = make_proposer("hybrid", task(root), opts)
    assert isinstance(proposer, HybridProposer)
    proposer.setup(history)
    return proposer


def user_prompt(server: ChatServer, i: int = -1) -> str:
    return str(server.seen[i].body["messages"][-1]["content"])


def test_accepting_the_optimizer_applies_its_suggestion(root, chat_server, monkeypatch):
    chat_server.script(openai_answer("I agree with the optimizer.\nAccept: optimizer\n"))
    proposer = build(root, chat_server, monkeypatch)
    p = proposer.propose(context(root, 1))

    assert p.error is None and p.meta["accepted"] is True
    lr = p.meta["params"]["LR"]
    assert find_constants((root / "train.py").read_text())["LR"].value == lr != 10.0
    assert (root / "train.py").read_text() == TRAIN.replace("LR = 10.0", f"LR = {lr!r}")
    assert p.description.startswith("optimizer (accepted by the model): LR 10.0 -> ")
    assert p.cost_usd > 0 and p.meta["model"] == "test-model"  # the llm path still counts
    prompt = user_prompt(chat_server)
    for needle in ("## The optimizer's view", "trust region", "- LR: [2.5, 40.0] log "
                   "(incumbent 10.0)", "The optimizer suggests for this experiment: LR 10.0 -> ",
                   "Accept: optimizer", "LR = 10.0"):
        assert needle in prompt

    row = Experiment(id=1, status="keep", description=p.description, metric=2.0,
                     proposer="hybrid", proposal=p.meta)
    proposer.observe(row)
    assert proposer.sweep.scale == 2.0  # a keep grows the trust region
    told = [t for t in proposer.sweep.study.trials if t.state == Complete][-1]
    # The study holds the asked value; the file (and the ledger) its 4-digit rounding.
    assert told.params["LR"] == pytest.approx(lr, rel=1e-3) and told.value == 2.0

    # Resume: a fresh hybrid re-tells that row to its study and replays the region.
    again = build(root, chat_server, monkeypatch, history=(BASELINE, row))
    assert again.sweep.scale == 2.0
    assert ({"LR": lr}, 2.0) in [(t.params, t.value) for t in again.sweep.study.trials]


def test_a_code_change_instead_drops_the_suggestion(root, chat_server, monkeypatch):
    edit = ("Description: clip the product\n\ntrain.py\n<<<<<<< SEARCH\n    return LR * WARMUP\n"
            "=======\n    return min(LR * WARMUP, 1.0)\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer(edit))
    proposer = build(root, chat_server, monkeypatch)
    p = proposer.propose(context(root, 1))
    assert p.error is None and "params" not in p.meta and "accepted" not in p.meta
    assert "min(LR * WARMUP, 1.0)" in (root / "train.py").read_text()
    proposer.observe(Experiment(id=1, status="keep", description=p.description, metric=1.0,
                                proposer="hybrid", proposal=p.meta))
    assert proposer.sweep.scale == 1.0  # a code change is not a move of the constants
    states = [t.state for t in proposer.sweep.study.trials]
    assert states == [Complete, optuna.trial.TrialState.FAIL]  # the seed; the dropped ask


def test_accept_beside_edit_blocks_is_a_code_change(root, chat_server, monkeypatch):
    edit = ("Accept: optimizer\nDescription: and also\n\ntrain.py\n<<<<<<< SEARCH\n"
            "WARMUP = 0.5\n=======\nWARMUP = 0.25\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer(edit))
    proposer = build(root, chat_server, monkeypatch)
    p = proposer.propose(context(root, 1))
    assert p.error is None and "accepted" not in p.meta
    assert (root / "train.py").read_text() == TRAIN.replace("WARMUP = 0.5", "WARMUP = 0.25")


def test_the_models_own_constants_are_told_to_the_study(root, chat_server, monkeypatch):
    edit = ("Description: a much smaller learning rate\n\ntrain.py\n<<<<<<< SEARCH\n"
            "LR = 10.0\n=======\nLR = 0.1\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer(edit))
    proposer = build(root, chat_server, monkeypatch)
    p = proposer.propose(context(root, 1))
    assert p.error is None and p.meta["params"] == {"LR": 0.1} and "accepted" not in p.meta
    proposer.observe(Experiment(id=1, status="discard", description=p.description, metric=4.0,
                                proposer="hybrid", proposal=p.meta))
    told = [(t.params, t.value) for t in proposer.sweep.study.trials if t.state == Complete]
    assert told[-1] == ({"LR": 0.1}, 4.0)


def test_the_prompt_shows_best_points_and_what_was_tried(root, chat_server, monkeypatch):
    history = (BASELINE,
               Experiment(id=1, status="discard", description="sweep: LR 10.0 -> 20.0",
                          metric=3.5, proposer="sweep", proposal={"params": {"LR": 20.0}}),
               Experiment(id=2, status="keep", description="sweep: LR 10.0 -> 5.0",
                          metric=2.5, proposer="sweep", proposal={"params": {"LR": 5.0}}),
               Experiment(id=3, status="crash", description="sweep: LR 5.0 -> 40.0",
                          proposer="hybrid", proposal={"params": {"LR": 40.0}}),
               Experiment(id=4, status="keep", description="rewrite the loss",
                          metric=2.0, proposer="hybrid"))
    chat_server.script(openai_answer("Accept: optimizer"))
    proposer = build(root, chat_server, monkeypatch, history=history, tried=2)
    proposer.propose(context(root, 5, history))
    prompt = user_prompt(chat_server)
    best = prompt.index("Best points so far (val_loss, lower is better):\n- #2 2.5: LR=5.0\n"
                        "- #1 3.5: LR=20.0\n")
    tried = prompt.index("Tried so far (3 points, the last 2 shown):\n- #2 keep 2.5: LR=5.0\n"
                         "- #3 crash -: LR=40.0\n")
    assert best < tried
    assert "scale now 2" in prompt  # the sweep rows replayed: a miss, a keep, a miss


def test_a_dollar_in_the_study_is_not_a_template_variable(root, chat_server, monkeypatch):
    (root / "train.py").write_text(TRAIN + 'MODE = "plain"\n')
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    proposer = make_proposer("hybrid", task(root, {"MODE": ["plain", "$metric"]}), {
        "model": "test-model", "base_url": chat_server.url, "api_key_env": "TEST_LLM_KEY"})
    proposer.setup((BASELINE,))
    chat_server.script(openai_answer("Accept: optimizer"))
    p = proposer.propose(context(root, 1))
    assert p.error is None and p.meta["params"] == {"MODE": "$metric"}
    assert "suggests for this experiment: MODE 'plain' -> '$metric'." in user_prompt(chat_server)


@pytest.mark.parametrize(("options", "sweep", "message"), [
    ({"bogus": 1}, None, r"proposer\.bogus: not an option of the hybrid proposer"),
    ({"tried": -1}, None, r"proposer\.tried: must be >= 0"),
    ({}, {"sampler": "grid"}, r"proposer\.sweep\.sampler"),
])
def test_config_errors_name_the_key(root, options, sweep, message):
    with pytest.raises(ConfigError, match=message):
        make_proposer("hybrid", task(root, sweep), {"model": "m", **options})


def test_hybrid_through_the_real_loop(tmp_path: Path, chat_server: ChatServer) -> None:
    extra = ('\n[decision]\npolicy = "strict"\n\n[proposer]\nkind = "hybrid"\nbackoff = 0.01\n'
             '\n[proposer.sweep]\nLEARNING_RATE = { low = 0.001, high = 1.0, log = true }\n')
    repo = make_repo(tmp_path / "repo", toml=toy_toml(extra=extra))
    edit = ("Description: more steps\n\ntrain.py\n<<<<<<< SEARCH\nSTEPS = 150\n=======\n"
            "STEPS = 300\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer("Accept: optimizer"), openai_answer(edit))
    # --pipeline 0: the second prompt must show the first result (not proposed ahead).
    res = run_cli(repo, "run", "--tag", "h", "--max-experiments", "2", "--model", "toy-model",
                  "--base-url", chat_server.url, "--pipeline", "0")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in
            (repo / ".autoresearch" / "h" / "results.jsonl").read_text().splitlines()]
    accepted, code = rows[1], rows[2]
    assert accepted["proposer"] == "hybrid" and accepted["proposal"]["accepted"] is True
    assert accepted["description"].startswith("optimizer (accepted by the model): "
                                              "LEARNING_RATE 0.02 -> ")
    # STEPS is not in the sweep's space, so the model's change is a plain code change.
    assert code["description"] == "more steps" and "params" not in code["proposal"]
    second = chat_server.seen[1].body["messages"][-1]["content"]
    assert f"- #1 {accepted['status']} " in second  # the model saw the first point's outcome
