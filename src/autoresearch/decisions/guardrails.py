"""Guardrails: hard limits on secondary metrics that no gain can buy off.

Karpathy's charter calls VRAM "a soft constraint" and leaves it to the agent.
Here a limit is a rule the harness enforces: a candidate that breaks one is
discarded with the rule in its reason, whatever its main metric says.

Rules are strings in ``[decision] guardrails``, one comparison each::

    guardrails = [
      "peak_vram_mb <= 1.2 * baseline",    # relative to the tag's baseline run
      "num_params_M <= 50",                # absolute
      "training_seconds < baseline + 30",
      "mfu_percent >= 0.9 x baseline",
    ]

Grammar: ``NAME OP BOUND`` with OP one of ``<= < >= >`` (or ``≤ ≥``) and BOUND a
number, or ``[FACTOR *] baseline [+|- OFFSET]`` (``*`` may be written ``×`` or
``x``; ``baseline * FACTOR`` also works). ``baseline`` is the value the tag's
baseline run reported for the same metric.

A metric the candidate did not report (or reported as NaN/inf) breaks its rule:
a change that silences the VRAM line must not slip past the VRAM limit. A
relative rule whose baseline lacks the metric also fails, loudly, so the
misconfiguration shows in the first reason instead of passing silently all night.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autoresearch.task import ConfigError

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}
_OP_ALIASES = {"≤": "<=", "≥": ">="}
_UNUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM = r"[-+]?" + _UNUM
_RULE = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*(?P<op><=|>=|<|>|≤|≥)\s*(?P<bound>.+?)\s*$")
_TIMES = r"\s*(?:\*|×|x)\s*"
_REL = re.compile(
    rf"^(?:(?P<f1>{_NUM}){_TIMES})?baseline(?:{_TIMES}(?P<f2>{_NUM}))?"
    rf"(?:\s*(?P<sign>[-+])\s*(?P<offset>{_UNUM}))?$"
)


@dataclass(frozen=True)
class Guardrail:
    """One parsed rule: ``metric OP factor * baseline + offset`` or ``metric OP offset``."""

    text: str
    metric: str
    op: str
    offset: float = 0.0
    factor: float | None = None  # None: absolute bound; else a multiple of the baseline

    def bound(self, baseline: Mapping[str, float]) -> float | None:
        """The numeric limit, or None when a relative rule has no finite baseline value."""
        if self.factor is None:
            return self.offset
        base = baseline.get(self.metric)
        if base is None or not math.isfinite(base):
            return None
        return self.factor * base + self.offset

    def violation(self, metrics: Mapping[str, float],
                  baseline: Mapping[str, float]) -> str | None:
        """None when the rule holds, else a one-line reason for the ledger."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return f"guardrail '{self.text}': the run did not report a finite {self.metric}"
        limit = self.bound(baseline)
        if limit is None:
            return (f"guardrail '{self.text}': the baseline did not report {self.metric}; "
                    "use an absolute limit or fix the metric name")
        if _OPS[self.op](value, limit):
            return None
        return f"guardrail '{self.text}' broken: {self.metric} = {value:g}, limit {limit:g}"

    def to_json(self, metrics: Mapping[str, float],
                baseline: Mapping[str, float]) -> dict[str, object]:
        value = metrics.get(self.metric)
        limit = self.bound(baseline)
        return {
            "rule": self.text,
            "value": value if value is not None and math.isfinite(value) else None,
            "limit": limit,
            "ok": self.violation(metrics, baseline) is None,
        }


def parse_guardrail(text: str, key: str = "decision.guardrails") -> Guardrail:
    """Parse one rule; a malformed one raises ConfigError naming ``key``."""
    m = _RULE.match(text)
    if m is None:
        raise ConfigError(f"{key}: cannot read {text!r}. Write NAME OP BOUND, e.g. "
                          "'peak_vram_mb <= 1.2 * baseline' or 'num_params_M <= 50'.")
    name, op, bound = m.group("name"), m.group("op"), m.group("bound")
    op = _OP_ALIASES.get(op, op)
    if re.fullmatch(_NUM, bound):
        return Guardrail(text.strip(), name, op, offset=float(bound))
    rel = _REL.match(bound)
    if rel is None or (rel.group("f1") and rel.group("f2")):
        raise ConfigError(f"{key}: cannot read the bound {bound!r} in {text!r}. Use a number "
                          "or FACTOR * baseline [+ OFFSET].")
    factor = float(rel.group("f1") or rel.group("f2") or 1.0)
    offset = float(rel.group("offset") or 0.0)
    if rel.group("sign") == "-":
        offset = -offset
    return Guardrail(text.strip(), name, op, offset=offset, factor=factor)


def parse_guardrails(rules: Sequence[str], key: str = "decision.guardrails") -> tuple[Guardrail,
                                                                                        ...]:
    if isinstance(rules, str) or not all(isinstance(r, str) for r in rules):
        raise ConfigError(f"{key}: expected a list of strings, e.g. "
                          "[\"peak_vram_mb <= 1.2 * baseline\"], got {rules!r}")
    return tuple(parse_guardrail(rule, f"{key}[{i}]") for i, rule in enumerate(rules))


def check_guardrails(rules: Sequence[Guardrail], metrics: Mapping[str, float],
                     baseline: Mapping[str, float]) -> list[str]:
    """Reasons for every broken rule, in rule order; empty when all hold."""
    return [v for rule in rules if (v := rule.violation(metrics, baseline)) is not None]
