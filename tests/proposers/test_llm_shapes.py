"""Today's response and error shapes (from the official SDK types) against the llm proposer.

Each test names the item of issue 10 it covers; all run on a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from autoresearch.proposers import ProposerError, make_proposer
from autoresearch.proposers.base import Proposal, Proposer, safe_propose
from autoresearch.proposers.llm import LLMProposer
from autoresearch.proposers.prices import Price, find_price
from autoresearch.proposers.responses import strip_think
from autoresearch.task import ConfigError

from .proposer_fixtures import (
    TRAIN,
    Reply,
    anthropic_error,
    anthropic_message,
    make_context,
    make_task,
    openai_answer,
    openai_error,
    openai_reasoning_answer,
)
from .test_llm import GOOD, build


def test_1_known_reasoning_model_gets_max_completion_tokens_and_no_temperature(
        workdir, chat_server, monkeypatch):
    chat_server.script(openai_reasoning_answer(GOOD, prompt_tokens=10_000, cached_tokens=8_000,
                                               completion_tokens=2_000, reasoning_tokens=1_500))
    proposer, _ = build(workdir, chat_server, monkeypatch, model="gpt-5.4-mini",
                        temperature=0.2, reasoning_effort="high", prices={})
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "lr = 0.03" in (workdir / "train.py").read_text()
    body = chat_server.seen[0].body
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body
    assert "temperature" not in body and body["reasoning_effort"] == "high"
    # Built-in price: 2,000 fresh input at 0.75, 8,000 cached at 0.075, 2,000 output at 4.5.
    assert p.cost_usd == pytest.approx((2_000 * 0.75 + 8_000 * 0.075 + 2_000 * 4.5) / 1e6)
    assert p.meta["cached_tokens"] == 8_000 and p.meta["reasoning_tokens"] == 1_500


def test_1_unknown_reasoning_model_is_learned_from_its_400_and_remembered(
        workdir, chat_server, monkeypatch):
    chat_server.script(
        openai_error(400, "Unsupported parameter: 'max_tokens' is not supported with this "
                     "model. Use 'max_completion_tokens' instead.", param="max_tokens",
                     code="unsupported_parameter"),
        openai_error(400, "Unsupported value: 'temperature' does not support 0.7 with this "
                     "model. Only the default (1) value is supported.", param="temperature",
                     code="unsupported_value"),
        openai_answer(GOOD), openai_answer(GOOD))
    proposer, sleeps = build(workdir, chat_server, monkeypatch, model="house-reasoner",
                             temperature=0.7)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and sleeps == []  # fixed at once, not a retry with backoff
    first, second, third = (s.body for s in chat_server.seen)
    assert "max_tokens" in first and "temperature" in first
    assert "max_completion_tokens" in second and "max_tokens" not in second
    assert "temperature" in second and "temperature" not in third
    assert len(p.meta["learned"]) == 2
    (workdir / "train.py").write_text(TRAIN)
    proposer.propose(make_context(workdir))
    later = chat_server.seen[3].body
    assert "max_completion_tokens" in later and "temperature" not in later  # remembered


def test_2_content_as_a_list_of_parts(workdir, chat_server, monkeypatch):
    parts = [{"type": "text", "text": GOOD[:40]}, {"type": "text", "text": GOOD[40:]}]
    chat_server.script(openai_reasoning_answer(parts))
    proposer, _ = build(workdir, chat_server, monkeypatch)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "lr = 0.03" in (workdir / "train.py").read_text()


def test_2_a_surprise_is_a_failed_proposal_never_a_traceback(workdir, chat_server,
                                                             monkeypatch):
    chat_server.script(openai_answer(GOOD))
    proposer, _ = build(workdir, chat_server, monkeypatch)

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'list' object has no attribute 'splitlines'")

    monkeypatch.setattr("autoresearch.proposers.llm.parse_answer", broken)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and "failed unexpectedly: AttributeError" in p.error
    assert p.tokens == 1200  # what was spent before the surprise still counts

    class Exploding(Proposer):
        name = "exploding"

        def propose(self, context: object) -> Proposal:
            raise KeyError("choices")

    failed = safe_propose(Exploding(), make_context(workdir))
    assert failed.error is not None and "KeyError" in failed.error


def test_3_refusal_and_empty_answers_never_send_an_empty_assistant_turn(
        workdir, chat_server, monkeypatch):
    chat_server.script(anthropic_message([], stop_reason="end_turn"),
                       anthropic_message([{"type": "text", "text": GOOD}]),
                       anthropic_message([], stop_reason="refusal"))
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic", max_retries=1)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "lr = 0.03" in (workdir / "train.py").read_text()
    for seen in chat_server.seen:
        assert all(m["content"].strip() for m in seen.body["messages"])
    assert [m["role"] for m in chat_server.seen[1].body["messages"]] == ["user"]
    (workdir / "train.py").write_text(TRAIN)
    refused = proposer.propose(make_context(workdir))
    assert refused.error == "the model refused to answer"


def test_4_cut_off_answer_is_retried_once_with_more_room_then_explained(
        workdir, chat_server, monkeypatch):
    cut = openai_reasoning_answer("Description: rewrite\n```python\nlr = 0.0",
                                  finish_reason="length", completion_tokens=4096)
    chat_server.script(cut, openai_answer(GOOD))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_tokens_ceiling=16384)
    p = proposer.propose(make_context(workdir))
    assert p.error is None
    assert [s.body["max_tokens"] for s in chat_server.seen] == [4096, 16384]
    assert "cut off at 4096 tokens" in p.meta["notes"][0]

    (workdir / "train.py").write_text(TRAIN)
    chat_server.seen.clear()
    chat_server.script(cut, cut)
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=2)  # ceiling = 4096
    p = proposer.propose(make_context(workdir))
    assert p.error is not None
    assert p.error.startswith("answer cut off at 4096 tokens; raise max_tokens")
    assert len(chat_server.seen) == 2  # not three paid answers
    assert "SEARCH/REPLACE blocks only" in chat_server.seen[1].body["messages"][-1]["content"]


def test_4_anthropic_max_tokens_stop_reason_is_a_cut(workdir, chat_server, monkeypatch):
    cut = anthropic_message([{"type": "text", "text": "Description: x\n<<<<<<< SEARCH\nlr"}],
                            stop_reason="max_tokens")
    chat_server.script(cut, cut)
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic")
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and "answer cut off at 50 tokens" in p.error


def test_5_think_drafts_are_removed_before_parsing_and_kept(workdir, chat_server, monkeypatch):
    draft = "Maybe <<<<<<< SEARCH\nsteps = 100\n=======\nsteps = 1\n>>>>>>> REPLACE? No."
    chat_server.script(openai_answer(f"<think>\n{draft}\n</think>\n\n{GOOD}"))
    proposer, _ = build(workdir, chat_server, monkeypatch, max_retries=0)
    p = proposer.propose(make_context(workdir))
    assert p.error is None
    assert (workdir / "train.py").read_text() == TRAIN.replace("lr = 0.02", "lr = 0.03")
    assert draft in p.meta["thinking"]


def test_5_anthropic_thinking_blocks_come_before_the_text(workdir, chat_server, monkeypatch):
    chat_server.script(anthropic_message([
        {"type": "thinking", "thinking": "Consider the lr.", "signature": "EqQBCgIYAhIM"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "text", "text": GOOD}]))
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic")
    p = proposer.propose(make_context(workdir))
    assert p.error is None and "Consider the lr." in p.meta["thinking"]


@pytest.mark.parametrize("text, answer, drafts", [
    ("plain", "plain", ""),
    ("<think>a</think>b", "b", "a"),
    ("a</think>b", "b", "a"),  # the template pre-filled <think>
    ("b<think>a", "b", "a"),  # cut off while thinking
])
def test_5_strip_think_shapes(text, answer, drafts):
    assert strip_think(text) == (answer, drafts)


@pytest.mark.parametrize("reply", [
    Reply(408, {"error": {"message": "timeout"}}),
    Reply(409, {"error": {"message": "conflict"}}),
    anthropic_error(529, "Overloaded", "overloaded_error"),
    Reply(400, {"error": {"message": "try again"}}, headers={"x-should-retry": "true"}),
])
def test_10_sdk_retryable_statuses(workdir, chat_server, monkeypatch, reply):
    chat_server.script(reply, openai_answer(GOOD))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    assert proposer.propose(make_context(workdir)).error is None and len(sleeps) == 1


def test_10_retry_after_ms_wins(workdir, chat_server, monkeypatch):
    chat_server.script(openai_error(429, "slow down", type_="requests", code="rate_limit_exceeded",
                                    headers={"retry-after-ms": "1500", "retry-after": "9"}),
                       openai_answer(GOOD))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    assert proposer.propose(make_context(workdir)).error is None and sleeps == [1.5]


def test_10_x_should_retry_false_is_one_attempt(workdir, chat_server, monkeypatch):
    chat_server.script(Reply(503, {"error": {"message": "down"}},
                             headers={"x-should-retry": "false"}))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    p = proposer.propose(make_context(workdir))
    assert p.error is not None and "x-should-retry: false" in p.error
    assert len(chat_server.seen) == 1 and sleeps == []


def test_10_insufficient_quota_stops_at_once_naming_the_variable(workdir, chat_server,
                                                                 monkeypatch):
    chat_server.script(openai_error(429, "You exceeded your current quota, please check your "
                                    "plan and billing details.", type_="insufficient_quota",
                                    code="insufficient_quota"))
    proposer, sleeps = build(workdir, chat_server, monkeypatch)
    with pytest.raises(ProposerError, match="TEST_LLM_KEY has no quota or credit left"):
        proposer.propose(make_context(workdir))
    assert len(chat_server.seen) == 1 and sleeps == []


def test_10_anthropic_credit_balance_names_the_variable(workdir, chat_server, monkeypatch):
    chat_server.script(anthropic_error(400, "Your credit balance is too low to access the "
                                       "Anthropic API. Please go to Plans & Billing."))
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic")
    with pytest.raises(ProposerError, match="TEST_LLM_KEY has no quota or credit left"):
        proposer.propose(make_context(workdir))


def test_11_anthropic_temperature_is_0_to_1(workdir):
    with pytest.raises(ConfigError, match="proposer.temperature: must be >= 0 and <= 1"):
        make_proposer("llm:anthropic", make_task(workdir), {"model": "m", "temperature": 1.5})
    assert isinstance(make_proposer("llm", make_task(workdir),
                                    {"model": "m", "temperature": 1.5}), LLMProposer)


def test_11_claude_cache_reads_and_writes_are_counted(workdir, chat_server, monkeypatch):
    chat_server.script(anthropic_message([{"type": "text", "text": GOOD}], usage={
        "input_tokens": 50, "cache_creation_input_tokens": 1_000,
        "cache_read_input_tokens": 9_000, "output_tokens": 400}))
    proposer, _ = build(workdir, chat_server, monkeypatch, provider="anthropic",
                        prices={"test-model": {"input": 2.0, "output": 10.0,
                                               "cached_input": 0.2, "cache_write": 2.5}})
    p = proposer.propose(make_context(workdir))
    assert p.tokens == 50 + 1_000 + 9_000 + 400
    assert p.cost_usd == pytest.approx((50 * 2 + 1_000 * 2.5 + 9_000 * 0.2 + 400 * 10) / 1e6)


def test_missing_usage_is_not_a_crash_and_says_so(workdir, chat_server, monkeypatch):
    body = openai_answer(GOOD).body
    del body["usage"]
    chat_server.script(Reply(200, body))
    proposer, _ = build(workdir, chat_server, monkeypatch)
    p = proposer.propose(make_context(workdir))
    assert p.error is None and p.cost_usd == 0 and "no token usage" in p.meta["cost_note"]


def test_price_table_has_current_models_and_dated_snapshots():
    assert find_price("claude-haiku-4-5-20251001", {}) == find_price("claude-haiku-4-5", {})
    assert find_price("gpt-5.5", {"gpt-5.5": Price(1, 2)}) == Price(1, 2)  # config wins
    assert find_price("no-such-model", {}) is None
