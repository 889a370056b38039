"""Proposer registry: one hook, ``register(name)``, for built-ins and plugins alike.

A proposer is chosen by a spec string, ``NAME`` or ``NAME:ARG`` (``sweep``,
``command:./propose.sh``, ``llm``, ``agent``), from ``--proposer`` or the
``kind`` key of ``[proposer]`` in autoresearch.toml. Its options are the rest of
that table overlaid with the command-line flags that were given.

Built-in modules are imported lazily, so ``autoresearch status`` never pays for
Optuna or an HTTP client. Third-party proposers are found through the entry point
group ``autoresearch.proposers`` (name = kind, value = a factory or a module that
calls ``register``) and imported only when their kind is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from autoresearch.plugins import load_plugin, plugins
from autoresearch.proposers.base import Context, Proposal, Proposer, ProposerError
from autoresearch.task import ConfigError, TaskSpec

Factory = Callable[[str | None, TaskSpec, dict[str, Any]], Proposer]

_REGISTRY: dict[str, Factory] = {}
_BUILTIN = {
    "sweep": "autoresearch.proposers.sweep",
    "command": "autoresearch.proposers.command",
    "llm": "autoresearch.proposers.llm",
    "agent": "autoresearch.proposers.agent",
    "hybrid": "autoresearch.proposers.hybrid",
}

__all__ = ["Context", "Proposal", "Proposer", "ProposerError", "make_proposer", "register"]


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator for a factory ``(arg, task, options) -> Proposer``."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


PLUGIN_GROUP = "autoresearch.proposers"


def available() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN) | set(plugins(PLUGIN_GROUP)))


def make_proposer(spec: str | None, task: TaskSpec, cli_options: dict[str, Any]) -> Proposer:
    """Build the proposer named by ``spec`` (or by ``[proposer] kind``, or ``sweep``).

    Options: the top-level keys of ``[proposer]`` (only when its ``kind`` is the
    proposer being built), then the sub-table ``[proposer.NAME]``, then the
    command-line flags that were given.
    """
    table = dict(task.proposer)
    kind = table.pop("kind", None)
    spec = spec or kind or "sweep"
    name, _, arg = spec.partition(":")
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY and name in (found := plugins(PLUGIN_GROUP)):
        obj = load_plugin(found[name], "proposer")
        if name not in _REGISTRY and callable(obj):  # a factory; a module registers itself
            register(name)(obj)
    if name not in _REGISTRY:
        raise ConfigError(f"proposer: unknown kind {name!r}. Choose one of: "
                          f"{', '.join(available())} (e.g. --proposer command:./propose.sh).")
    kinds = set(available())
    own = table.pop(name, {}) if isinstance(table.get(name), dict) else {}
    top = {k: v for k, v in table.items() if not (k in kinds and isinstance(v, dict))}
    kind_name = (kind or "sweep").partition(":")[0]
    options = {**(top if kind_name == name else {}), **own,
               **{k: v for k, v in cli_options.items() if v is not None}}
    return _REGISTRY[name](arg or None, task, options)
