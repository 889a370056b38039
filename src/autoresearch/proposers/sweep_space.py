"""The sweep's search space: constants found by AST, their caps, and a travelling trust region.

A constant has a *cap* (the widest range it may ever take: explicit bounds from
`[proposer.sweep]`, or a wide default around its starting value) and, per
experiment, a *region*: a window of the cap centred on the incumbent's value.
The region's width is one number for the whole study, ``scale``, which grows
after a keep and shrinks after a run of misses, so the sweep can walk decades
away from where it started and still refine once it gets there.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from autoresearch.task import ConfigError

Value = int | float | bool | str

# Default caps, as factors around the starting value: floats may travel three decades either
# way, ints sixteen-fold. Explicit bounds replace them.
FLOAT_SPAN = 1000.0
INT_SPAN = 16


@dataclass(frozen=True)
class Constant:
    name: str
    value: Value
    line: int  # 1-based
    col: int  # byte offsets of the literal on that line
    end_col: int


def find_constants(source: str) -> dict[str, Constant]:
    """Module-level ``NAME = literal`` assignments with UPPER_CASE names (last one wins)."""
    found: dict[str, Constant] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and target.id.isupper()):
            continue
        literal: Any
        if isinstance(value, ast.Constant) and isinstance(value.value, (int, float, str)):
            literal = value.value
        elif (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub)
              and isinstance(value.operand, ast.Constant)
              and isinstance(value.operand.value, (int, float))
              and not isinstance(value.operand.value, bool)):
            literal = -value.operand.value
        else:
            continue
        if value.lineno != value.end_lineno:
            continue  # multi-line string literals are not tunable
        found[target.id] = Constant(target.id, literal, value.lineno, value.col_offset,
                                    value.end_col_offset or value.col_offset)
    return found


def format_value(value: Value) -> str:
    if isinstance(value, float):
        return repr(float(f"{value:.4g}"))  # short, readable diffs
    return repr(value)


def rewrite(source: str, constant: Constant, value: Value) -> str:
    """Replace only the literal of `constant` in `source`."""
    lines = source.splitlines(keepends=True)
    line = lines[constant.line - 1]
    # AST offsets count UTF-8 bytes; convert through bytes so non-ASCII lines stay right.
    raw = line.encode()
    new = raw[:constant.col] + format_value(value).encode() + raw[constant.end_col:]
    lines[constant.line - 1] = new.decode()
    return "".join(lines)


def default_cap(value: Value) -> BaseDistribution | None:
    """The widest default range for a constant found in the file, or None (left alone)."""
    if isinstance(value, bool):
        return CategoricalDistribution([True, False])
    if isinstance(value, int):
        if value <= 0:
            return None
        return IntDistribution(max(1, value // INT_SPAN), value * INT_SPAN, log=True)
    if isinstance(value, float):
        if value <= 0:
            return None
        return FloatDistribution(value / FLOAT_SPAN, value * FLOAT_SPAN, log=True)
    return None


def parse_space(table: dict[str, Any]) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for name, spec in table.items():
        key = f"proposer.sweep.{name}"
        try:
            space[name] = _distribution(key, spec)
        except (ValueError, TypeError) as exc:  # e.g. log=true with low=0, low > high
            raise ConfigError(f"{key}: {exc}") from None
    return space


def _distribution(key: str, spec: Any) -> BaseDistribution:
    if isinstance(spec, list) and spec:
        return CategoricalDistribution(spec)
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{key}: expected a list of choices or a table "
                          f"{{ low = ..., high = ..., log = true|false }}, got {spec!r}")
    extra = sorted(set(spec) - {"low", "high", "log", "step"})
    if extra:
        raise ConfigError(f"{key}.{extra[0]}: unknown key. A range takes low, high, log, step.")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) and not log:
        return IntDistribution(low, high, step=int(spec.get("step", 1)))
    return FloatDistribution(float(low), float(high), log=log, step=spec.get("step"))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def region(cap: BaseDistribution, centre: Value, scale: float, radius: float
           ) -> BaseDistribution:
    """The window of `cap` searched this experiment, centred on the incumbent's `centre`.

    Log-scaled ranges span ``centre / f .. centre * f`` with ``f = radius ** scale``
    (``radius ** (scale / 2)`` for integers, which are mostly sizes: depth, batch, heads,
    where x4 at once tends to crash rather than teach); linear ones
    ``centre +- scale * (high - low) / 4``. Choices are never narrowed.
    """
    if not isinstance(cap, (FloatDistribution, IntDistribution)) or isinstance(centre, str):
        return cap
    c = _clamp(float(centre), cap.low, cap.high)
    if cap.log:
        f = radius ** (scale / 2 if isinstance(cap, IntDistribution) else scale)
        low, high = c / f, c * f
    else:
        half = scale * (cap.high - cap.low) / 4
        low, high = c - half, c + half
    low, high = _clamp(low, cap.low, cap.high), _clamp(high, cap.low, cap.high)
    if isinstance(cap, IntDistribution):
        step = cap.step
        # Snap onto the cap's grid, and never narrower than one step either side of the centre.
        lo = cap.low + step * math.floor((min(low, c - step) - cap.low) / step)
        hi = cap.low + step * math.ceil((max(high, c + step) - cap.low) / step)
        return IntDistribution(max(cap.low, int(lo)), min(cap.high, int(hi)), log=cap.log,
                               step=step)
    if cap.step is not None:
        fstep = cap.step
        flo = cap.low + fstep * math.floor((low - cap.low) / fstep)
        fhi = cap.low + fstep * math.ceil((high - cap.low) / fstep)
        return FloatDistribution(max(cap.low, flo), min(cap.high, fhi), step=fstep)
    if high <= low:  # the centre sits on a bound of a zero-width window
        return cap
    return FloatDistribution(low, high, log=cap.log)


def contains(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def widened(dist: BaseDistribution, value: Any) -> BaseDistribution:
    """`dist` stretched to hold `value` (a rounded value may sit just past a bound)."""
    if isinstance(dist, FloatDistribution) and dist.step is None \
            and isinstance(value, (int, float)) and not isinstance(value, bool):
        return FloatDistribution(min(dist.low, float(value)), max(dist.high, float(value)),
                                 log=dist.log)
    return dist


def bounds_text(dist: BaseDistribution) -> str:
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        scale = " log" if dist.log else ""
        return f"[{format_value(dist.low)}, {format_value(dist.high)}]{scale}"
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(format_value(c) for c in dist.choices) + "}"  # type: ignore[arg-type]
    return repr(dist)


def dist_to_json(dist: BaseDistribution) -> list[Any] | None:
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return [dist.low, dist.high]
    return None


def dist_from_json(cap: BaseDistribution, data: Any) -> BaseDistribution:
    """The region a ledger row recorded, in the cap's kind (so Optuna accepts it)."""
    if not (isinstance(data, list) and len(data) == 2):
        return cap
    try:
        if isinstance(cap, IntDistribution):
            return IntDistribution(int(data[0]), int(data[1]), log=cap.log, step=cap.step)
        if isinstance(cap, FloatDistribution):
            return FloatDistribution(float(data[0]), float(data[1]), log=cap.log, step=cap.step)
    except (ValueError, TypeError):
        pass
    return cap
