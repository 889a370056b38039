"""What a model call costs: a dated table of current prices, overridable per model.

Prices change and models retire, so the built-in table carries the date it was
checked (``PRICES_CHECKED``) and every entry can be replaced by
``[proposer.prices]``. A price counts every kind of token a provider bills:
fresh input, cache reads (OpenAI ``cached_tokens``, Anthropic
``cache_read_input_tokens``), Anthropic cache writes, and output, reasoning
tokens included (they are billed as output and already counted in it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRICES_CHECKED = "2026-11-29"
CACHE_WRITE_FACTOR = 1.25  # Anthropic's 5-minute cache write, relative to base input


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Unset cache prices fall back to the input price (never
    under-counting); a cache write defaults to 1.25x input, Anthropic's 5-minute rate."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
        """``input_tokens`` is the whole prompt, cache reads and writes included."""
        fresh = max(0, input_tokens - cached_tokens - cache_write_tokens)
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input * CACHE_WRITE_FACTOR if self.cache_write is None else self.cache_write
        return (fresh * self.input + cached_tokens * cached + cache_write_tokens * write
                + output_tokens * self.output) / 1e6


# Standard-tier list prices in USD per million tokens, checked on PRICES_CHECKED against
# OpenAI's pricing page (developers.openai.com/api/docs/pricing) and Anthropic's model pages
# (platform.claude.com/docs/.../models). Batch, priority and long-prompt tiers are not here.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5.5": Price(5.0, 30.0, cached_input=0.5),
    "gpt-5.4": Price(2.5, 15.0, cached_input=0.25),
    "gpt-5.4-mini": Price(0.75, 4.5, cached_input=0.075),
    "gpt-5.4-nano": Price(0.2, 1.25, cached_input=0.02),
    "claude-opus-5-5": Price(4.0, 20.0, cached_input=0.2, cache_write=5.0),
    "claude-sonnet-5-5": Price(2.0, 10.0, cached_input=0.2, cache_write=2.5),
    "claude-opus-5": Price(5.0, 25.0, cached_input=0.5, cache_write=6.25),
    "claude-sonnet-5": Price(2.0, 10.0, cached_input=0.2, cache_write=2.5),
    "claude-haiku-4-5": Price(1.0, 5.0, cached_input=0.1, cache_write=1.25),
}
_DATED = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")  # claude-x-20250929, gpt-x-2026-04-01


def find_price(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price for ``model``: configured first, then the built-in table; a dated
    snapshot id (``claude-haiku-4-5-20251001``) matches its undated alias."""
    for table in (prices, DEFAULT_PRICES):
        for name in (model, _DATED.sub("", model)):
            if name in table:
                return table[name]
    return None


_FIELDS = {"input", "output", "cached_input", "cache_write"}


def parse_prices(value: Any) -> dict[str, Price]:
    """``{model = [in, out]}`` or ``{model = {input = x, output = y, cached_input = z,
    cache_write = w}}``, USD per 1M tokens."""
    if not isinstance(value, dict):
        raise ValueError("expected a table of model = [input_usd_per_mtok, output_usd_per_mtok]")
    out: dict[str, Price] = {}
    for model, p in value.items():
        if isinstance(p, dict) and p and set(p) <= _FIELDS and {"input", "output"} <= set(p):
            fields = dict(p)
        elif isinstance(p, list | tuple) and len(p) == 2:
            fields = {"input": p[0], "output": p[1]}
        else:
            raise ValueError(f"{model}: expected [input, output] or {{input = .., output = .., "
                             f"cached_input = .., cache_write = ..}} USD per million tokens, "
                             f"got {p!r}")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and x >= 0
                   for x in fields.values()):
            raise ValueError(f"{model}: prices must be non-negative numbers, got {p!r}")
        out[str(model)] = Price(**{k: float(v) for k, v in fields.items()})
    return out
