"""The ``[decision]`` option schema: one ``Option`` per key, validated on load.

Policies declare their keys in ``Policy.OPTIONS``; shared groups of keys (the
pruning rule's) live beside the code that uses them and are merged in. An
unknown key or a bad value raises ``ConfigError`` naming ``decision.KEY``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoresearch.task import ConfigError


@dataclass(frozen=True)
class Option:
    """One ``[decision]`` key a policy accepts: its type, default and a value check.

    ``kind`` is ``int``, ``float``, ``bool`` or ``list`` (a list of strings).
    ``check`` returns an error message for a bad value, or None.
    """

    kind: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false",
               list: "a list of strings"}


def _kind_ok(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # bool is an int subclass; `z = true` is a typo, not 1.0
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _coerce(key: str, opt: Option, value: Any) -> Any:
    if not _kind_ok(opt.kind, value):
        raise ConfigError(f"decision.{key}: expected {_KIND_NAMES[opt.kind]}, got {value!r}. "
                          f"({opt.help})")
    value = float(value) if opt.kind is float else value
    if opt.check is not None and (problem := opt.check(value)) is not None:
        raise ConfigError(f"decision.{key}: {problem}, got {value!r}. ({opt.help})")
    return value


def validate_options(policy: str, schema: Mapping[str, Option],
                     options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against ``schema``; return them with defaults filled in."""
    for key in options:
        if key not in schema:
            known = ", ".join(sorted(["policy", *schema]))
            raise ConfigError(f"decision.{key}: unknown option for policy {policy!r}. "
                              f"Known keys: {known}.")
    return {key: _coerce(key, opt, options[key]) if key in options else opt.default
            for key, opt in schema.items()}


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def above(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v > low else f"must be above {low:g}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}"


def nonneg(v: Any) -> str | None:
    return None if v >= 0 else "must not be negative"
