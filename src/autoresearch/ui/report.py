"""Reading a tag's ledger back: the status table and Karpathy-style progress plot.

Following Optuna's visualization split, each view is a pure data function
(`summarize`, `progress_data`) and a renderer (`render_status`, `plot_progress`),
so the numbers can be tested without a terminal or a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoresearch.ledger import Experiment
from autoresearch.task import MetricSpec


@dataclass(frozen=True)
class Summary:
    experiments: int  # candidates, baseline and re-measures excluded
    kept: int
    keep_rate: float
    baseline: float | None
    best: float | None
    best_id: int | None
    per_hour: float
    by_status: dict[str, int]
    baseline_holdout: float | None = None
    best_holdout: float | None = None


def _candidates(rows: list[Experiment]) -> list[Experiment]:
    return [e for e in rows if e.proposer not in ("baseline", "harness")]


def summarize(rows: list[Experiment]) -> Summary:
    cands = _candidates(rows)
    kept_rows = [e for e in rows if e.status == "keep"]
    by_status: dict[str, int] = {}
    for e in rows:
        by_status[e.status] = by_status.get(e.status, 0) + 1
    kept = sum(1 for e in cands if e.status == "keep")
    span = (max(e.finished for e in rows) - min(e.started for e in rows)) if rows else 0.0
    runs = len([e for e in rows if e.proposer != "harness"])
    best = kept_rows[-1] if kept_rows else None
    return Summary(
        experiments=len(cands), kept=kept, keep_rate=kept / len(cands) if cands else 0.0,
        baseline=kept_rows[0].metric if kept_rows else None,
        best=best.metric if best else None, best_id=best.id if best else None,
        per_hour=runs / (span / 3600) if span > 0 else 0.0, by_status=by_status,
        baseline_holdout=kept_rows[0].holdout if kept_rows else None,
        best_holdout=best.holdout if best else None)


def short_reason(reason: str, width: int = 60) -> str:
    """The reason's first line, cut to `width`: the rest (log tails) is for `--full`/`show`."""
    line = reason.strip().splitlines()[0] if reason.strip() else ""
    return line if len(line) <= width else line[:width - 1] + "\u2026"


def render_status(rows: list[Experiment], metric: MetricSpec, tag: str, console: Console,
                  last: int = 50, full: bool = False) -> None:
    """The last `last` rows; `full` shows each reason whole instead of its first line."""
    table = Table(title=f"autoresearch/{tag}", title_style="bold")
    holdout = any(e.holdout is not None for e in rows)
    cols = ["#", "commit", metric.name, *(["holdout"] if holdout else []), "mem GB", "status",
            "description", "reason"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("commit", "status", "description",
                                                     "reason") else "right")
    styles = {"keep": "green", "crash": "red", "timeout": "red", "invalid": "yellow",
              "checks_failed": "yellow"}
    for e in rows[-last:]:
        value = "" if e.metric is None else f"{e.metric:.6f}"
        held = [] if not holdout else ["" if e.holdout is None else f"{e.holdout:.6f}"]
        table.add_row(str(e.id), e.commit[:7], value, *held, f"{e.memory_gb:.1f}",
                      f"[{styles.get(e.status, 'dim')}]{e.status}[/]",
                      escape(e.description[:70]),
                      escape(e.reason.strip() if full else short_reason(e.reason)))
    console.print(table)
    s = summarize(rows)
    if s.best is not None and s.baseline is not None:
        console.print(f"best {metric.name} {s.best:.6f} (experiment {s.best_id}), "
                      f"{s.best - s.baseline:+.6f} vs baseline {s.baseline:.6f}")
    if s.best_holdout is not None and s.baseline_holdout is not None:
        # Val improving while holdout does not is overfitting to the validation set.
        console.print(f"holdout: best {s.best_holdout:.6f}, "
                      f"{s.best_holdout - s.baseline_holdout:+.6f} vs baseline "
                      f"{s.baseline_holdout:.6f}")
    console.print(f"{s.experiments} experiments, {s.kept} kept ({s.keep_rate:.0%}), "
                  f"{s.per_hour:.1f} runs/hour; " +
                  ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())))


@dataclass(frozen=True)
class ProgressData:
    x: list[int]  # experiment ids with a metric
    y: list[float]
    kept: list[bool]
    labels: list[str]
    best_x: list[int]  # the running best, as a step line
    best_y: list[float]
    holdout_x: list[int] = field(default_factory=list)  # kept experiments' holdout scores
    holdout_y: list[float] = field(default_factory=list)


def progress_data(rows: list[Experiment], metric: MetricSpec) -> ProgressData:
    x, y, kept, labels, bx, by, hx, hy = [], [], [], [], [], [], [], []
    best: float | None = None
    for e in rows:
        if e.metric is None or e.proposer == "harness":
            continue
        x.append(e.id)
        y.append(e.metric)
        kept.append(e.status == "keep")
        labels.append(e.description)
        if e.status == "keep":
            best = e.metric
            if e.holdout is not None:
                hx.append(e.id)
                hy.append(e.holdout)
        if best is not None:
            bx.append(e.id)
            by.append(best)
    return ProgressData(x, y, kept, labels, bx, by, hx, hy)


def plot_progress(data: ProgressData, metric: MetricSpec, out: Path, title: str) -> Path:
    """Faint dots for discarded runs, green kept runs with their descriptions, best as steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(12, 6), dpi=120)
    dx = [x for x, k in zip(data.x, data.kept) if not k]
    dy = [y for y, k in zip(data.y, data.kept) if not k]
    ax.scatter(dx, dy, s=14, color="#999999", alpha=0.35, label="discarded")
    kx = [x for x, k in zip(data.x, data.kept) if k]
    ky = [y for y, k in zip(data.y, data.kept) if k]
    ax.scatter(kx, ky, s=36, color="#2ca02c", zorder=3, label="kept")
    ax.step(data.best_x, data.best_y, where="post", color="#2ca02c", linewidth=1.5,
            label="running best")
    if data.holdout_x:
        ax.plot(data.holdout_x, data.holdout_y, "s--", color="#1f77b4", markersize=5,
                markerfacecolor="none", linewidth=1, label="holdout (kept)")
    for x, y, label, was_kept in zip(data.x, data.y, data.labels, data.kept):
        if was_kept:
            ax.annotate(label[:40], (x, y), textcoords="offset points", xytext=(4, 6),
                        fontsize=7, color="#1b5e20", rotation=20)
    if data.best_y:
        # Zoom on the running best; crashes and bad runs far away would flatten the progress.
        lo = min(data.best_y + data.holdout_y)
        hi = max(data.best_y + data.holdout_y)
        pad = (hi - lo) * 0.5 or abs(hi) * 0.05 or 1.0
        worse = 3 * pad  # leave room on the worse side for the discarded cloud
        if metric.direction == "minimize":
            ax.set_ylim(lo - pad, hi + worse)
        else:
            ax.set_ylim(lo - worse, hi + pad)
    # The first point is the baseline: count experiments after it, as `status` does.
    n, k = max(0, len(data.x) - 1), max(0, sum(data.kept) - 1)
    ax.set_title(f"{title}: baseline + {n} experiments, {k} kept")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("experiment")
    ax.set_ylabel(f"{metric.name} ({'lower' if metric.direction == 'minimize' else 'higher'} "
                  "is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right" if metric.direction == "minimize" else "lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
