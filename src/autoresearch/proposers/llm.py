"""The ``llm`` proposer: a chat model answers with SEARCH/REPLACE edits.

Per experiment: render the prompt (program.md as system; files, history, kept
diffs, last crash and last rejection as the user turn), ask the model, parse
and apply its edits in memory. A block that does not apply goes back to the
model with the reason, up to ``max_retries`` times; only a fully applicable
answer is written to the worktree. Anything else is ``Proposal(error=...)``,
which the harness records as ``invalid``. Tokens and cost of every call,
including failed tries, are summed into the proposal so ``--max-cost`` sees
what was really spent.

Options (``[proposer]`` in autoresearch.toml, or flags):
``provider`` openai|anthropic, ``model``, ``base_url``, ``api_key_env``,
``max_retries`` (edit retries, 2), ``api_retries`` (HTTP retries, 5),
``backoff`` (first retry wait in s, 2), ``timeout`` (per request, 300 s),
``max_tokens`` (4096), ``temperature``, ``prices`` ({model = [in, out]} USD per
million tokens), ``prompt_dir``, ``history`` (ledger rows shown, 30).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import Context, Proposal, Proposer, ProposerError
from autoresearch.proposers.clients import (
    DEFAULT_BASE_URLS,
    DEFAULT_KEY_ENV,
    ApiUnavailable,
    ChatClient,
    Message,
    Price,
    parse_prices,
)
from autoresearch.proposers.edits import (
    apply_edits,
    fallback_description,
    is_editable,
    parse_answer,
)
from autoresearch.proposers.options import check_known, get_num, get_str
from autoresearch.proposers.render import check_prompt_dir, files_text, load_template, variables
from autoresearch.task import ConfigError, TaskSpec

log = logging.getLogger(__name__)

OPTIONS = ("provider", "model", "base_url", "api_key_env", "max_retries", "api_retries",
           "backoff", "timeout", "max_tokens", "temperature", "prices", "prompt_dir", "history")


class LLMProposer(Proposer):
    name = "llm"

    def __init__(self, client: ChatClient, *, max_retries: int = 2, history: int = 30,
                 prices: dict[str, Price] | None = None, prompt_dir: Path | None = None,
                 key_required: bool = True):
        self.client = client
        self.max_retries = max_retries
        self.history = history
        self.prices = prices or {}
        self.prompt_dir = prompt_dir
        self.key_required = key_required
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
        if self.client.model not in self.prices:
            log.warning("no price configured for model %r: its cost is counted as $0 and "
                        "--max-cost cannot stop on it. Set [proposer.prices] %s = [input, output] "
                        "(USD per million tokens).", self.client.model, self.client.model)

    def close(self) -> None:
        self.client.close()

    def _cost(self, model: str, tin: int, tout: int) -> tuple[float, str | None]:
        price = self.prices.get(self.client.model) or self.prices.get(model)
        if price is None:
            return 0.0, f"no price for model {self.client.model!r}; cost counted as 0"
        return price.cost(tin, tout), None

    def propose(self, context: Context) -> Proposal:
        values = variables(context, self.history)
        system = self.templates["system.txt"].safe_substitute(values)
        messages = [Message("user", self.templates["user.txt"].safe_substitute(values))]
        original = dict(context.files)
        working = dict(original)
        description = ""
        spent = {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0, "api_attempts": 0}
        meta: dict[str, Any] = {"provider": self.client.provider, "model": self.client.model}
        errors: list[str] = []
        notes: list[str] = []

        def proposal(error: str | None = None) -> Proposal:
            # cost_usd and tokens travel in the Proposal itself; meta keeps the breakdown.
            meta.update({k: v for k, v in spent.items() if k != "cost_usd"},
                        answers=len([m for m in messages if m.role == "assistant"]))
            if notes:
                meta["notes"] = notes
            return Proposal(description=description or "(no description)", error=error,
                            cost_usd=round(spent["cost_usd"], 6),
                            tokens=int(spent["input_tokens"] + spent["output_tokens"]), meta=meta)

        for _ in range(self.max_retries + 1):
            try:
                reply = self.client.complete(system, messages)
            except ApiUnavailable as exc:
                return proposal(error=str(exc))
            cost, cost_note = self._cost(reply.model, reply.input_tokens, reply.output_tokens)
            spent["cost_usd"] += cost
            spent["input_tokens"] += reply.input_tokens
            spent["output_tokens"] += reply.output_tokens
            spent["api_attempts"] += reply.attempts
            if cost_note:
                meta["cost_note"] = cost_note
            messages.append(Message("assistant", reply.text))

            parsed = parse_answer(reply.text, working, context.editable)
            description = parsed.description or description or fallback_description(reply.text)
            applied = apply_edits(working, parsed.edits)
            working = applied.files
            notes.extend(applied.notes)
            errors = [*parsed.errors, *applied.errors]
            if not errors and working == original:
                errors = ["The edits change nothing: the files are identical to before. "
                          "Propose an actual change."]
            if not errors:
                self._write(context, original, working)
                return proposal()
            done = list(applied.changed)
            messages.append(Message("user", self.templates["retry.txt"].safe_substitute(
                values,
                errors="\n".join(f"- {e}" for e in errors),
                applied=(f"The other blocks did apply (to {', '.join(done)}); do not resend "
                         "them. The files below already contain them.\n" if done else ""),
                files=files_text(working),
            )))
        return proposal(error=f"no applicable edit after {self.max_retries + 1} answers: "
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
        example = "claude-sonnet-4-5" if provider == "anthropic" else "gpt-4o"
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
    temperature = get_num(options, "temperature", None, low=0, high=2)
    client = ChatClient(
        provider=provider, model=model, base_url=base_url, api_key=None, key_env=key_env,
        max_tokens=int(get_num(options, "max_tokens", 4096, integer=True, low=1) or 4096),
        temperature=None if temperature is None else float(temperature),
        timeout=float(get_num(options, "timeout", 300.0, low=0, low_open=True) or 300.0),
        retries=int(get_num(options, "api_retries", 5, integer=True, low=0) or 0),
        backoff=float(get_num(options, "backoff", 2.0, low=0) or 0.0),
    )
    try:
        prompt_dir = check_prompt_dir(get_str(options, "prompt_dir"), task.root)
    except ProposerError as exc:
        raise ConfigError(str(exc)) from exc
    # A key is only mandatory for the hosted APIs; a local server (Ollama, vLLM,
    # llama.cpp) at a custom base_url usually takes none. An explicit api_key_env
    # says the user expects one, so then it is required too.
    key_required = (base_url.rstrip("/") == DEFAULT_BASE_URLS[provider]
                    or "api_key_env" in options)
    return LLMProposer(
        client,
        max_retries=int(get_num(options, "max_retries", 2, integer=True, low=0) or 0),
        history=int(get_num(options, "history", 30, integer=True, low=0) or 0),
        prices=prices, prompt_dir=prompt_dir, key_required=key_required,
    )
