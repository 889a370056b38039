"""`autoresearch finalize`: a night as a branch to merge and a report to read.

`finalize` writes the review branch (`review.branch`), optionally re-measures the
baseline and the best (`--confirm K`) and each kept change's contribution (`--ablate`) with
the loop's own sandboxed measurement (`review.remeasure`), then REPORT.md and its plot
(`review.report_md`) into `.autoresearch/TAG/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from autoresearch.integrity.seal import key_path
from autoresearch.ledger import Ledger
from autoresearch.review.branch import Review, build, changes
from autoresearch.review.remeasure import (
    Confirmation,
    Contribution,
    Remeasurer,
    Stats,
    ablate,
    confirm,
)
from autoresearch.review.report_md import Setup, hardware, render, write_report
from autoresearch.task import MetricSpec, TaskSpec
from autoresearch.workspace import Workspace, WorkspaceError


@dataclass(frozen=True)
class Finalized:
    review: Review
    report: Path
    confirmation: Confirmation | None = None
    ablation: tuple[Contribution, ...] = ()


def finalize(ws: Workspace, ledger: Ledger, metric: MetricSpec, task: TaskSpec | None,
             say: Callable[[str], None], confirm_k: int = 0, ablate_changes: bool = False,
             force: bool = False, seed: int = 42) -> Finalized:
    rows = ledger.experiments
    review = build(ws.root, rows, ws.tag, metric.name, force=force)
    say(f"branch {review.branch}: {len(review.commits)} commits from {review.base[:12]}")
    conf: Confirmation | None = None
    contribs: list[Contribution] = []
    if confirm_k or ablate_changes:
        if task is None:
            raise WorkspaceError("--confirm/--ablate re-run the task: run finalize where "
                                 "its autoresearch.toml is, or pass --config.")
        kept = [e for e in rows if e.status == "keep"]
        # Re-run under the budget the night ran with (`run --time-budget` overrides the
        # task file's): a confirmation at another budget measures another thing.
        ran_with = kept[0].evidence.get("time_budget") if kept else None
        if ran_with and float(ran_with) != task.time_budget:
            budget = float(ran_with)
            say(f"re-runs use the night's {budget:g}s budget (the task file says "
                f"{task.time_budget:g}s)")
            task = replace(task, time_budget=budget,
                           timeout=max(task.timeout, 2 * budget, budget + 60))
        with ws.lock():  # no loop on this tag meanwhile; the ledger is only read
            sealed = Ledger(ws.state, metric.name, key_path(ws.git_dir, ws.tag))
            sealed.load()
            r = Remeasurer(task, ws, sealed.intact, kept[0], say, seed)
            try:
                best_runs = Stats(())
                if confirm_k:
                    conf = confirm(r, kept[0], kept[-1], confirm_k)
                    best_runs = conf.best
                if ablate_changes:
                    k = max(1, confirm_k)
                    if best_runs.mean is None:
                        vals = [r.run(review.tree, kept[-1].id, rep, f"best-{rep}")[0]
                                for rep in range(k)]
                        best_runs = Stats(tuple(v for v in vals if v is not None))
                    contribs = ablate(r, kept[-1], changes(ws.root, rows), k, best_runs)
            finally:
                r.close()
    text = render(rows, metric, ws.tag, Setup(task, hardware()), review, conf, contribs)
    report = write_report(ws.state, text, rows, metric, ws.tag)
    return Finalized(review, report, conf, tuple(contribs))
