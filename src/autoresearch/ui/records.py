"""Machine-readable views of a tag, and `autoresearch show N`, for agents and scripts.

The JSON documents (printed by ``--json``; field lists are in docs/json.md):

- ``status --json``: ``{"schema": "autoresearch.status/1", "tag", "metric": {"name",
  "direction"}, "summary": {...}, "experiments": [record, ...]}``, one record per ledger
  row, in ledger order.
- ``show N --json``: ``{"schema": "autoresearch.show/1", "tag", "metric", "experiment":
  record, "patch": str, "log_tail": str, "log_path": str}``.
- ``report --json``: ``{"schema": "autoresearch.report/1", "tag", "metric", "summary",
  "progress": {...}, "plot": str}``.

A record is exactly the ledger row (`Experiment.to_json`), so a field added to the ledger
appears here without a change; ``summary`` is `ui.report.Summary` plus ``hours`` and
``cost_usd``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from autoresearch.execution.process import log_tail
from autoresearch.ledger import Experiment
from autoresearch.task import MetricSpec
from autoresearch.ui.report import ProgressData, Summary, summarize
from autoresearch.workspace import git

LOG_TAIL_LINES = 40


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: strict parsers (JavaScript's) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def record(e: Experiment) -> dict[str, Any]:
    return dict(_finite(e.to_json()))


def summary_json(rows: list[Experiment]) -> dict[str, Any]:
    s: Summary = summarize(rows)
    span = (max(e.finished for e in rows) - min(e.started for e in rows)) if rows else 0.0
    return dict(_finite({**asdict(s), "hours": span / 3600,
                         "cost_usd": sum(e.cost_usd for e in rows)}))


def _head(tag: str, metric: MetricSpec, kind: str) -> dict[str, Any]:
    return {"schema": f"autoresearch.{kind}/1", "tag": tag,
            "metric": {"name": metric.name, "direction": metric.direction}}


def status_json(rows: list[Experiment], metric: MetricSpec, tag: str) -> dict[str, Any]:
    return {**_head(tag, metric, "status"), "summary": summary_json(rows),
            "experiments": [record(e) for e in rows]}


def report_json(rows: list[Experiment], metric: MetricSpec, tag: str, progress: ProgressData,
                plot: Path) -> dict[str, Any]:
    return {**_head(tag, metric, "report"), "summary": summary_json(rows),
            "progress": _finite(asdict(progress)), "plot": str(plot)}


def patch_of(e: Experiment, repo: Path) -> str:
    """The experiment's change as a unified diff against the incumbent it was tried on."""
    if not e.commit or not e.parent:
        return ""
    return git("diff", "--no-color", "--no-ext-diff", e.parent, e.commit, cwd=repo, check=False)


def log_of(e: Experiment, lines: int = LOG_TAIL_LINES) -> str:
    return log_tail(Path(e.log), lines) if e.log else ""


def show_json(e: Experiment, metric: MetricSpec, tag: str, repo: Path) -> dict[str, Any]:
    return {**_head(tag, metric, "show"), "experiment": record(e), "patch": patch_of(e, repo),
            "log_tail": log_of(e), "log_path": e.log}


def render_show(e: Experiment, metric: MetricSpec, repo: Path, console: Console) -> None:
    """One experiment for a person: what it was, why it was decided so, its diff and log."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    value = "n/a" if e.metric is None else f"{e.metric:.6f}"
    rows: list[tuple[str, str]] = [
        ("status", e.status), (metric.name, value),
        ("holdout", "" if e.holdout is None else f"{e.holdout:.6f}"),
        ("commit", e.commit), ("parent", e.parent), ("proposer", e.proposer),
        ("cost", f"${e.cost_usd:.4f}" if e.cost_usd else ""),
        ("run time", f"{e.run_seconds:.1f}s"), ("worker", e.worker), ("log", e.log)]
    for key, val in rows:
        if val:
            facts.add_row(key, escape(val))
    parts: list[Any] = [facts, Panel(escape(e.reason or "(none)"), title="reason")]
    if e.metrics:
        parts.append(Panel(escape("  ".join(f"{k}={v:g}" for k, v in sorted(e.metrics.items()))),
                           title="metrics"))
    if e.evidence:
        parts.append(Panel(escape("\n".join(f"{k}: {v}" for k, v in e.evidence.items())),
                           title="decision evidence"))
    patch = patch_of(e, repo)
    parts.append(Panel(Syntax(patch, "diff", word_wrap=True) if patch else "(no change)",
                       title="diff"))
    tail = log_of(e)
    if tail:
        parts.append(Panel(escape(tail), title=f"log tail ({LOG_TAIL_LINES} lines)"))
    console.print(Panel(Group(*parts), title=f"experiment {e.id}: {escape(e.description)}"))
