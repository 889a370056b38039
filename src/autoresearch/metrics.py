"""Read metrics out of an experiment's output. The harness parses; the proposer never reports.

Two forms are accepted:

- Karpathy's summary block: a line ``---`` followed by ``name:  value`` lines
  (``val_bpb:          0.997900``). Only lines after the last ``---`` count,
  so a training log that prints ``loss: 3.2`` along the way is not mistaken
  for the summary.
- pi-autoresearch's ``METRIC name=value`` lines, anywhere in the output.

The last occurrence of a name wins. Values that are not numbers are ignored;
``nan`` and ``inf`` are parsed (so they can be rejected by name, not missed).

A run may also report intermediate values, ``METRIC name=value progress=F`` with
``F`` the fraction of its budget done (0 to 1). They are a separate stream,
read by ``parse_progress`` for early stopping: ``parse_metrics`` never takes one
for the final metric, so printing a curve cannot change a run's result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SUMMARY_LINE = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*:\s*(\S+)\s*$")
_METRIC_LINE = re.compile(r"^\s*METRIC\s+([A-Za-z_][\w.\-/]*)\s*=\s*(\S+)\s*$")
_PROGRESS_LINE = re.compile(
    r"^\s*METRIC\s+([A-Za-z_][\w.\-/]*)\s*=\s*(\S+)\s+progress\s*=\s*(\S+)\s*$")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_metrics(text: str) -> dict[str, float]:
    """All metrics in `text`, from the summary block and METRIC lines."""
    found: dict[str, float] = {}
    lines = text.splitlines()
    last_rule = max((i for i, line in enumerate(lines) if line.strip() == "---"), default=None)
    for i, line in enumerate(lines):
        m = _METRIC_LINE.match(line)
        if m is None and last_rule is not None and i > last_rule:
            m = _SUMMARY_LINE.match(line)
        if m is None:
            continue
        value = _number(m.group(2))
        if value is not None:
            found[m.group(1)] = value
    return found


@dataclass(frozen=True)
class MetricReading:
    value: float | None  # the primary metric, finite, or None
    metrics: dict[str, float]  # every finite metric found (primary included)
    problem: str | None  # why `value` is None


def read_metric(text: str, name: str) -> MetricReading:
    """The primary metric `name` and the secondaries; a missing/NaN/inf value is a problem."""
    found = parse_metrics(text)
    finite = {k: v for k, v in found.items() if math.isfinite(v)}
    if name not in found:
        seen = ", ".join(sorted(found)[:12]) or "none (print `METRIC name=value`, or " \
            "`name: value` lines after a `---` line)"
        return MetricReading(None, finite, f"metric {name!r} not found in the output; "
                             f"metrics found: {seen}")
    if not math.isfinite(found[name]):
        return MetricReading(None, finite, f"metric {name!r} is {found[name]}")
    return MetricReading(found[name], finite, None)


@dataclass(frozen=True)
class ProgressPoint:
    progress: float  # fraction of the budget done, 0..1
    value: float


Curve = tuple[ProgressPoint, ...]


def progress_point(line: str) -> tuple[str, ProgressPoint] | None:
    """``(name, point)`` from a ``METRIC name=value progress=F`` line, else None.

    A value or progress that is not a finite number, or a progress outside
    [0, 1], makes the line not a progress report (ignored, like a bad metric).
    """
    m = _PROGRESS_LINE.match(line)
    if m is None:
        return None
    value, progress = _number(m.group(2)), _number(m.group(3))
    if value is None or progress is None or not math.isfinite(value) \
            or not 0.0 <= progress <= 1.0:
        return None
    return m.group(1), ProgressPoint(progress, value)


def parse_progress(text: str) -> dict[str, Curve]:
    """Every metric's intermediate curve in `text`, in order of output."""
    curves: dict[str, list[ProgressPoint]] = {}
    for line in text.splitlines():
        found = progress_point(line)
        if found is not None:
            curves.setdefault(found[0], []).append(found[1])
    return {name: tuple(points) for name, points in curves.items()}
