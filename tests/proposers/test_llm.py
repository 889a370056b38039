"""The llm proposer against a real HTTP server on 127.0.0.1 with scripted answers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from autoresearch.ledger import Experiment
from autoresearch.proposers import ProposerError, make_proposer
from autoresearch.proposers.llm import LLMProposer
from autoresearch.task import ConfigError

from .proposer_fixtures import (
    TRAIN,
    ChatServer,
    Reply,
    anthropic_answer,
    make_context,
    make_task,
    openai_answer,
)

GOOD = ("Description: raise the learning rate to 0.03\n\ntrain.py\n<<<<<<< SEARCH\n"
        "lr = 0.02\n=======\nlr = 0.03\n>>>>>>> REPLACE\n")


def build(workdir: Path, server: ChatServer, monkeypatch: pytest.MonkeyPatch,
          **options: Any) -> tuple[LLMProposer, list[float]]:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    opts = {"model": "test-model", "base_url": server.url, "api_key_env": "TEST_LLM_KEY",
            "backoff": 0.01, "prices": {"test-model": [3.0, 15.0]}, **options}
    proposer = make_proposer("llm", make_task(workdir), opts)
    assert isinstance(proposer, LLMProposer)
    sleeps: list[float] = []
    proposer.client.sleep = sleeps.append  # record waits instead of sleeping
    proposer.setup(())
    return proposer, sleeps


def test_good_edit_openai(workdir, chat_server, monkeypatch):
    chat_server.script(openai_answer(GOOD, prompt_tokens=1000, completion_tokens=200))
    proposer, _ = build(workdir, chat_server, monkeypatch)
    history = (Experiment(id=0, status="keep", description="baseline", metric=1.25),
               Experiment(id=1, status="crash", description="huge batch", reason="OOM"))
    ctx = make_context(workdir, history=history, experiment_id=2,
                       feedback="duplicate: that edit was already evaluated as #1",
                       last_failure="CUDA out of memory")
    p = proposer.propose(ctx)

    assert p.error is None
    assert p.description == "raise the learning rate to 0.03"
    assert (workdir / "train.py").read_text() == TRAIN.replace("lr = 0.02", "lr = 0.03")
    assert p.tokens == 1200
    assert p.cost_usd == pytest.approx((1000 * 3.0 + 200 * 15.0) / 1e6)
    assert p.meta["answers"] == 1 and "cost_note" not in p.meta

    [req] = chat_server.seen
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test-123"
    assert req.body["model"] == "test-model"
    system, user = req.body["messages"]
    assert system["role"] == "system" and "Minimize val_loss" in system["content"]
    assert "<<<<<<< SEARCH" in system["content"]  # the answer format is explained
    for needle in ("lr = 0.02", "#0 keep 1.25 baseline", "#1 crash - huge batch [OOM]",
                   "CUDA out of memory", "duplicate: that edit was already evaluated"):
        assert needle in user["content"]


def test_good_edit_anthropic(workdir, chat_server, monkeypatch):
    chat_server.script(anthropic_answer(GOOD, input_tokens=500, output_tokens=100))
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic",
                        prices={"test-model": {"input": 1.0, "output": 5.0}})
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "lr = 0.03" in (workdir / "train.py").read_text()
    assert p.tokens == 600 and p.cost_usd == pytest.approx((500 + 500) / 1e6)
    [req] = chat_server.seen
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == "sk-test-123"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "Minimize val_loss" in req.body["system"]
    assert [m["role"] for m in req.body["messages"]] == ["user"]
    assert req.body["max_tokens"] == 4096


def test_malformed_answer_becomes_an_invalid_proposal(workdir, chat_server, monkeypatch):
    chat_server.script(openai_answer("I think lowering the learning rate would help."))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=0)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and "no edit" in p.error
    assert (workdir / "train.py").read_text() == TRAIN
    assert p.tokens == 1200 and p.cost_usd > 0  # a useless answer still costs money


def test_search_mismatch_is_sent_back_and_the_retry_succeeds(workdir, chat_server,
                                                             monkeypatch):
    wrong = GOOD.replace("lr = 0.02\n===", "lr = 0.01\n===")
    chat_server.script(openai_answer(wrong), openai_answer(GOOD))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=1)
    p = proposer.propose(make_context(workdir))

    assert p.error is None
    assert "lr = 0.03" in (workdir / "train.py").read_text()
    assert p.meta["answers"] == 2 and p.tokens == 2400  # both calls are paid for
    retry = chat_server.seen[1].body["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == wrong
    assert "does not match" in retry[3]["content"] and "lr = 0.01" in retry[3]["content"]


def test_retries_run_out_then_invalid(workdir, chat_server, monkeypatch):
    wrong = GOOD.replace("lr = 0.02\n===", "lr = 0.01\n===")
    chat_server.script(openai_answer(wrong), openai_answer(wrong))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=1)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and p.error.startswith("no applicable edit after 2 answers")
    assert (workdir / "train.py").read_text() == TRAIN
    assert len(chat_server.seen) == 2


def test_out_of_scope_edit_is_refused_by_the_proposer(workdir, chat_server, monkeypatch):
    cheat = ("Description: easier data\nprepare.py\n<<<<<<< SEARCH\nDATA = 'fixed'\n=======\n"
             "DATA = 'easy'\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer(cheat))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=0)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and "`prepare.py` is not editable" in p.error
    assert (workdir / "prepare.py").read_text() == "DATA = 'fixed'\n"


def test_429_with_retry_after_then_success(workdir, chat_server, monkeypatch):
    chat_server.script(
        Reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "7"}),
        openai_answer(GOOD))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "lr = 0.03" in (workdir / "train.py").read_text()
    assert sleeps == [7.0]  # the server's wait, not our backoff
    assert len(chat_server.seen) == 2 and p.meta["api_attempts"] == 2


def test_500s_exhaust_the_retries(workdir, chat_server, monkeypatch):
    chat_server.script(*[Reply(500, {"error": {"message": "overloaded"}})] * 3)
    proposer, sleeps = build(workdir, chat_server, monkeypatch, api_retries=2, backoff=0.5)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None
    assert "failed 3 times" in p.error and "HTTP 500: overloaded" in p.error
    assert len(chat_server.seen) == 3
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    assert (workdir / "train.py").read_text() == TRAIN


def test_timeout_is_retried(workdir, chat_server, monkeypatch):
    chat_server.script(Reply(200, {}, delay=1.0), openai_answer(GOOD))
    proposer, sleeps = build(workdir, chat_server, monkeypatch, timeout=0.2)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and len(sleeps) == 1


def test_401_stops_with_a_clear_message(workdir, chat_server, monkeypatch):
    chat_server.script(Reply(401, {"error": {"message": "Incorrect API key provided"}}))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    with pytest.raises(ProposerError) as err:
        proposer.propose(make_context(workdir))
    msg = str(err.value)
    assert "HTTP 401: Incorrect API key provided" in msg and "TEST_LLM_KEY" in msg
    assert len(chat_server.seen) == 1 and sleeps == []  # no retry on auth errors


def test_400_is_fatal_and_names_the_model(workdir, chat_server, monkeypatch):
    chat_server.script(Reply(400, {"error": {"message": "model not supported"}}))
    proposer, _ = build(workdir, chat_server, monkeypatch)
    with pytest.raises(ProposerError, match="HTTP 400: model not supported.*'test-model'"):
        proposer.propose(make_context(workdir))


def test_missing_key_for_hosted_api_fails_at_setup(workdir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    proposer = make_proposer("llm", make_task(workdir), {"model": "gpt-4o"})
    with pytest.raises(ProposerError, match="OPENAI_API_KEY is not set"):
        proposer.setup(())
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    proposer = make_proposer("llm:anthropic", make_task(workdir), {"model": "claude-x"})
    with pytest.raises(ProposerError, match="ANTHROPIC_API_KEY is not set"):
        proposer.setup(())


def test_local_server_needs_no_key_and_unknown_price_costs_zero(workdir, chat_server,
                                                                 monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_server.script(openai_answer(GOOD))
    proposer = make_proposer("llm", make_task(workdir),
                             {"model": "qwen2.5-coder", "base_url": chat_server.url})
    proposer.setup(())
    p = proposer.propose(make_context(workdir))
    assert p.error is None and p.cost_usd == 0.0 and "no price" in p.meta["cost_note"]
    assert "authorization" not in chat_server.seen[0].headers


@pytest.mark.parametrize("options, message", [
    ({"model": "m", "bogus": 1}, "proposer.bogus: not an option of the llm proposer"),
    ({}, "proposer.model: required"),
    ({"model": "m", "provider": "gemini"}, "proposer.provider: expected one of"),
    ({"model": "m", "max_retries": -1}, "proposer.max_retries: must be >= 0"),
    ({"model": "m", "max_retries": True}, "proposer.max_retries: expected an integer"),
    ({"model": "m", "base_url": "localhost:11434"}, "proposer.base_url"),
    ({"model": "m", "prices": {"m": [1]}}, "proposer.prices"),
    ({"model": "m", "prompt_dir": "nowhere"}, "proposer.prompt_dir"),
])
def test_config_errors_name_the_key(workdir, options, message):
    with pytest.raises(ConfigError, match=message):
        make_proposer("llm", make_task(workdir), options)


def test_prompt_templates_can_be_overridden(workdir, chat_server, monkeypatch):
    custom = workdir.parent / "prompts"
    custom.mkdir()
    (custom / "user.txt").write_text("CUSTOM for $metric: {braces are fine}\n$files\n")
    chat_server.script(openai_answer(GOOD))
    proposer, _ = build(workdir, chat_server, monkeypatch, prompt_dir=str(custom))
    assert proposer.propose(make_context(workdir)).error is None
    system, user = chat_server.seen[0].body["messages"]
    assert user["content"].startswith("CUSTOM for val_loss: {braces are fine}")
    assert "<<<<<<< SEARCH" in system["content"]  # the other templates stay built-in


def test_kept_diffs_come_from_git(workdir, chat_server, monkeypatch):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=workdir, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    (workdir / "train.py").write_text(TRAIN.replace("steps = 100", "steps = 120"))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "more steps")
    sha = git("rev-parse", "HEAD")
    history = (Experiment(id=3, status="keep", description="more steps", metric=1.1,
                          commit=sha),)
    chat_server.script(openai_answer(GOOD))
    proposer, _ = build(workdir, chat_server, monkeypatch)
    proposer.propose(make_context(workdir, history=history))
    user = chat_server.seen[0].body["messages"][1]["content"]
    assert "#3 more steps" in user and "-steps = 100\n+steps = 120" in user


def test_out_of_scope_block_never_reaches_disk_even_after_a_good_retry(workdir, chat_server,
                                                                       monkeypatch):
    mixed = GOOD + ("\nprepare.py\n<<<<<<< SEARCH\nDATA = 'fixed'\n=======\nDATA = 'easy'\n"
                    ">>>>>>> REPLACE\n")
    fix = ("Description: raise lr and shorten training\n<<<<<<< SEARCH\nsteps = 100\n=======\n"
           "steps = 80\n>>>>>>> REPLACE\n")
    chat_server.script(openai_answer(mixed), openai_answer(fix))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=1)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and p.description == "raise lr and shorten training"
    retry = chat_server.seen[1].body["messages"][-1]["content"]
    assert "`prepare.py` is not editable" in retry and "did apply (to train.py)" in retry
    assert (workdir / "train.py").read_text().startswith("lr = 0.03\nsteps = 80\n")
    assert (workdir / "prepare.py").read_text() == "DATA = 'fixed'\n"
