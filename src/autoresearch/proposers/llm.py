"""The ``llm`` proposer: a chat model answers with SEARCH/REPLACE edits.

Per experiment: render the prompt (program.md as system; files, history, kept
diffs, last crash and last rejection as the user turn), ask the model, parse
and apply its edits in memory. A block that does not apply goes back to the
model with the reason, up to ``max_retries`` times; only a fully applicable
answer is written to the worktree. Anything else is ``Proposal(error=...)``,
which the harness records as ``invalid``. Tokens and cost of every call,
including failed tries, are summed into the proposal so ``--max-cost`` sees
what was really spent.

Answers that cannot be used are failed proposals with the reason, never a
crash: a refusal, an empty answer (asked again, never echoed back as an empty
turn), an answer cut off at the token limit (asked once more with room up to
``max_tokens_ceiling``, or for SEARCH/REPLACE only), and anything unforeseen.
Reasoning drafts (``<think>``, thinking blocks) are removed before parsing and
kept, shortened, in the proposal's ``meta["thinking"]``.

Options (``[proposer]`` in autoresearch.toml, or flags):
``provider`` openai|anthropic, ``model``, ``base_url``, ``api_key_env``,
``max_retries`` (edit retries, 2), ``api_retries`` (HTTP retries, 5),
``backoff`` (first retry wait in s, 2), ``timeout`` (per request, 300 s),
``max_tokens`` (4096), ``max_tokens_ceiling`` (16384 on the hosted APIs, else
``max_tokens``), ``temperature``, ``reasoning_effort`` (OpenAI), ``prices``
({model = [in, out]} USD per million tokens), ``prompt_dir``, ``history``
(ledger rows shown, 30).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import Context, Proposal, Proposer, ProposerError
from autoresearch.proposers.clients import (
    DEFAULT_BASE_URLS,
    DEFAULT_KEY_ENV,
    REASONING_EFFORTS,
    ApiUnavailable,
    ChatClient,
    Message,
    Reply,
)
from autoresearch.proposers.edits import (
    apply_edits,
    fallback_description,
    is_editable,
    parse_answer,
)
from autoresearch.proposers.options import check_known, get_num, get_str
from autoresearch.proposers.prices import PRICES_CHECKED, Price, find_price, parse_prices
from autoresearch.proposers.render import check_prompt_dir, files_text, load_template, variables
from autoresearch.task import ConfigError, TaskSpec

log = logging.getLogger(__name__)

OPTIONS = ("provider", "model", "base_url", "api_key_env", "max_retries", "api_retries",
           "backoff", "timeout", "max_tokens", "max_tokens_ceiling", "temperature",
           "reasoning_effort", "prices", "prompt_dir", "history")
HOSTED_CEILING = 16384  # every current hosted model accepts this many output tokens
THINKING_KEPT = 4000  # characters of drafts kept in the ledger row, head and tail
CUT_NOTE = ("Your previous answer was cut off at {n} tokens, before it was complete. Answer "
            "again with SEARCH/REPLACE blocks only: no whole files, no explanation beyond the "
            "Description line.")


def _shorten(text: str, limit: int = THINKING_KEPT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... ({len(text) - limit} characters omitted) ...\n{text[-half:]}"


@dataclass
class _Tally:
    """What one proposal spent and said, also when it ends early."""

    meta: dict[str, Any]
    description: str = ""
    cost: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
         "reasoning_tokens", "api_attempts", "answers"), 0))
    notes: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)

    def add(self, reply: Reply, cost: float, cost_note: str | None) -> None:
        self.cost += cost
        for key in ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                    "reasoning_tokens"):
            self.counts[key] += getattr(reply, key)
        self.counts["api_attempts"] += reply.attempts
        self.counts["answers"] += 1
        if reply.thinking:
            self.thinking.append(reply.thinking)
        if cost_note:
            self.meta["cost_note"] = cost_note

    def proposal(self, error: str | None = None) -> Proposal:
        # cost_usd and tokens travel in the Proposal itself; meta keeps the breakdown.
        self.meta.update({k: v for k, v in self.counts.items() if v or k == "answers"})
        self.meta.setdefault("input_tokens", 0)
        self.meta.setdefault("output_tokens", 0)
        if self.notes:
            self.meta["notes"] = self.notes
        if self.thinking:
            self.meta["thinking"] = _shorten("\n\n---\n\n".join(self.thinking))
        return Proposal(description=self.description or "(no description)", error=error,
                        cost_usd=round(self.cost, 6),
                        tokens=self.counts["input_tokens"] + self.counts["output_tokens"],
                        meta=self.meta)


class LLMProposer(Proposer):
    name = "llm"

    def __init__(self, client: ChatClient, *, max_retries: int = 2, history: int = 30,
                 prices: dict[str, Price] | None = None, prompt_dir: Path | None = None,
                 key_required: bool = True, max_tokens_ceiling: int | None = None):
        self.client = client
        self.max_retries = max_retries
        self.history = history
        self.prices = prices or {}
        self.prompt_dir = prompt_dir
        self.key_required = key_required
        self.max_tokens_ceiling = max(max_tokens_ceiling or 0, client.max_tokens)
        self.templates = {n: load_template(n, prompt_dir)
                          for n in ("system.txt", "user.txt", "retry.txt")}

    def setup(self, history: Sequence[Experiment]) -> None:
        key = os.environ.get(self.client.key_env) or None
        if key is None and self.key_required:
            raise ProposerError(
                f"llm proposer: environment variable {self.client.key_env} is not set. Export "
                f"your {self.client.provider} API key there, or name another variable with "
                "[proposer] api_key_env.")
        self.client.api_key = key
        reason = self.cost_unknown()
        if reason:
            log.warning("%s: its cost is counted as $0.", reason)

    def cost_unknown(self) -> str | None:
        if find_price(self.client.model, self.prices) is not None:
            return None
        return (f"model {self.client.model!r} has no price (the built-in table, checked "
                f"{PRICES_CHECKED}, does not list it). Set [proposer.prices] "
                f'"{self.client.model}" = [input, output] in USD per million tokens')

    def close(self) -> None:
        self.client.close()

    def _cost(self, reply: Reply) -> tuple[float, str | None]:
        price = find_price(self.client.model, self.prices) or find_price(reply.model,
                                                                         self.prices)
        if price is None:
            return 0.0, f"no price for model {self.client.model!r}; cost counted as 0"
        if not reply.usage_reported:
            return 0.0, "the server reported no token usage; cost counted as 0"
        return price.cost(reply.input_tokens, reply.output_tokens, reply.cached_tokens,
                          reply.cache_write_tokens), None

    def propose(self, context: Context) -> Proposal:
        tally = _Tally({"provider": self.client.provider, "model": self.client.model})
        try:
            return self._propose(context, tally)
        except ProposerError:
            raise
        except Exception as exc:  # noqa: BLE001 - a surprise costs one experiment, not the run
            log.exception("llm proposer: unexpected failure")
            return tally.proposal(error=f"the llm proposer failed unexpectedly: "
                                        f"{type(exc).__name__}: {exc}")

    def _propose(self, context: Context, tally: _Tally) -> Proposal:
        values = variables(context, self.history)
        system = self.templates["system.txt"].safe_substitute(values)
        messages = [Message("user", self.templates["user.txt"].safe_substitute(values))]
        original = dict(context.files)
        working = dict(original)
        errors: list[str] = []
        limit = self.client.max_tokens
        cut_retried = False
        answers_left = self.max_retries + 1
        while answers_left > 0:
            try:
                reply = self.client.complete(system, messages, max_tokens=limit)
            except ApiUnavailable as exc:
                return tally.proposal(error=str(exc))
            tally.add(reply, *self._cost(reply))
            if self.client.learned:
                tally.meta["learned"] = list(self.client.learned)
            if reply.stop == "refusal":
                said = " ".join(reply.text.split())[:300]
                return tally.proposal(error="the model refused to answer"
                                            + (f": {said}" if said else ""))
            if reply.stop == "length":
                cut_at = reply.output_tokens or limit
                if cut_retried:
                    return tally.proposal(error=(
                        f"answer cut off at {cut_at} tokens; raise max_tokens (now {limit}) "
                        "or max_tokens_ceiling in [proposer], or make the editable files "
                        "smaller"))
                cut_retried = True
                if limit < self.max_tokens_ceiling:
                    limit = self.max_tokens_ceiling
                    tally.notes.append(f"answer cut off at {cut_at} tokens; asked again "
                                       f"with max_tokens={limit}")
                else:
                    last = messages[-1]
                    messages[-1] = Message(last.role, f"{last.content}\n\n"
                                                      f"{CUT_NOTE.format(n=cut_at)}")
                    tally.notes.append(f"answer cut off at {cut_at} tokens; asked for "
                                       "SEARCH/REPLACE blocks only")
                continue
            answers_left -= 1
            if not reply.text.strip():
                # Never echoed back: an empty assistant turn is a 400 on Anthropic.
                errors = [f"the model returned an empty answer (stop reason: {reply.stop})"]
                continue
            messages.append(Message("assistant", reply.text))

            parsed = parse_answer(reply.text, working, context.editable)
            tally.description = (parsed.description or tally.description
                                 or fallback_description(reply.text))
            applied = apply_edits(working, parsed.edits)
            working = applied.files
            tally.notes.extend(applied.notes)
            errors = [*parsed.errors, *applied.errors]
            if not errors and working == original:
                errors = ["The edits change nothing: the files are identical to before. "
                          "Propose an actual change."]
            if not errors:
                self._write(context, original, working)
                return tally.proposal()
            done = list(applied.changed)
            messages.append(Message("user", self.templates["retry.txt"].safe_substitute(
                values,
                errors="\n".join(f"- {e}" for e in errors),
                applied=(f"The other blocks did apply (to {', '.join(done)}); do not resend "
                         "them. The files below already contain them.\n" if done else ""),
                files=files_text(working),
            )))
        answers = tally.counts["answers"]
        return tally.proposal(error=f"no applicable edit after {answers} answers: "
                                    + " ".join(errors))

    @staticmethod
    def _write(context: Context, original: dict[str, str], working: dict[str, str]) -> None:
        for path, text in working.items():
            if original.get(path) == text or not is_editable(path, context.editable):
                continue
            target = context.workdir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


@register("llm")
def make_llm(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> LLMProposer:
    """``--proposer llm`` or ``llm:anthropic`` (the argument is the provider)."""
    check_known("llm", options, OPTIONS)
    provider = get_str(options, "provider", arg or "openai", choices=("openai", "anthropic"))
    assert provider is not None
    model = get_str(options, "model")
    if model is None:
        example = "claude-sonnet-5-5" if provider == "anthropic" else "gpt-5.4-mini"
        raise ConfigError(f'proposer.model: required for the llm proposer, e.g. model = '
                          f'"{example}" in [proposer], or --model.')
    base_url = get_str(options, "base_url", DEFAULT_BASE_URLS[provider])
    assert base_url is not None
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"proposer.base_url: expected an http(s) URL such as "
                          f"http://localhost:11434/v1, got {base_url!r}")
    key_env = get_str(options, "api_key_env", DEFAULT_KEY_ENV[provider])
    assert key_env is not None
    try:
        prices = parse_prices(options.get("prices", {}))
    except ValueError as exc:
        raise ConfigError(f"proposer.prices: {exc}") from exc
    # The Messages API takes temperature in [0, 1]; chat-completions in [0, 2].
    temperature = get_num(options, "temperature", None, low=0,
                          high=1 if provider == "anthropic" else 2)
    effort = get_str(options, "reasoning_effort", None, choices=REASONING_EFFORTS)
    if effort and provider != "openai":
        raise ConfigError("proposer.reasoning_effort: only for provider = \"openai\" (o-series "
                          "and gpt-5 models); current Claude models choose their thinking "
                          "themselves.")
    hosted = base_url.rstrip("/") == DEFAULT_BASE_URLS[provider]
    max_tokens = int(get_num(options, "max_tokens", 4096, integer=True, low=1) or 4096)
    ceiling = int(get_num(options, "max_tokens_ceiling",
                          max(max_tokens, HOSTED_CEILING) if hosted else max_tokens,
                          integer=True, low=1) or max_tokens)
    if ceiling < max_tokens:
        raise ConfigError(f"proposer.max_tokens_ceiling: must be >= max_tokens ({max_tokens}), "
                          f"got {ceiling}")
    client = ChatClient(
        provider=provider, model=model, base_url=base_url, api_key=None, key_env=key_env,
        max_tokens=max_tokens,
        temperature=None if temperature is None else float(temperature),
        timeout=float(get_num(options, "timeout", 300.0, low=0, low_open=True) or 300.0),
        retries=int(get_num(options, "api_retries", 5, integer=True, low=0) or 0),
        backoff=float(get_num(options, "backoff", 2.0, low=0) or 0.0),
        reasoning_effort=effort,
    )
    try:
        prompt_dir = check_prompt_dir(get_str(options, "prompt_dir"), task.root)
    except ProposerError as exc:
        raise ConfigError(str(exc)) from exc
    # A key is only mandatory for the hosted APIs; a local server (Ollama, vLLM,
    # llama.cpp) at a custom base_url usually takes none. An explicit api_key_env
    # says the user expects one, so then it is required too.
    return LLMProposer(
        client,
        max_retries=int(get_num(options, "max_retries", 2, integer=True, low=0) or 0),
        history=int(get_num(options, "history", 30, integer=True, low=0) or 0),
        prices=prices, prompt_dir=prompt_dir, key_required=hosted or "api_key_env" in options,
        max_tokens_ceiling=ceiling,
    )
