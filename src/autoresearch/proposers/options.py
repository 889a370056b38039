"""Typed reads of the ``[proposer]`` table, failing with the key's full name.

The table arrives already overlaid with command-line flags, so every error
names ``proposer.KEY`` and says what a valid value looks like.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autoresearch.task import ConfigError

# Keys the harness reads from the same table (stop conditions); proposers ignore them.
HARNESS_KEYS = frozenset({"max_cost"})


def check_known(kind: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    known = set(allowed)
    for key in options:
        if key not in known and key not in HARNESS_KEYS:
            raise ConfigError(f"proposer.{key}: not an option of the {kind} proposer. "
                              f"Known options: {', '.join(sorted(known))}.")


def get_str(options: dict[str, Any], key: str, default: str | None = None,
            choices: Iterable[str] | None = None) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"proposer.{key}: expected a non-empty string, got {value!r}")
    if choices is not None and value not in set(choices):
        raise ConfigError(f"proposer.{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value.strip()


def get_num(options: dict[str, Any], key: str, default: float | None, *, integer: bool = False,
            low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float | None:
    value = options.get(key, default)
    if value is None:
        return None
    kinds: tuple[type[int] | type[float], ...] = (int,) if integer else (int, float)
    # bool is an int subclass; `max_retries = true` is a typo, not one retry.
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"proposer.{key}: expected {what}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low:g}" if low is not None else ""
        if high is not None:
            bounds += f"{' and ' if bounds else ''}<= {high:g}"
        raise ConfigError(f"proposer.{key}: must be {bounds}, got {value!r}")
    return value
