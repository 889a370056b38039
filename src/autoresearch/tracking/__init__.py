"""Experiment trackers (W&B, MLflow) fed by the loop's events; see `base` for the contract.

The loop's side, three calls (all return at once; delivery runs on a thread)::

    hub = make_hub(task, ws.state, ws.tag)         # once, after the ledger is loaded
    hub.started(exp_id, description, parent, worker)  # when an experiment begins
    hub.finished(exp)                               # after its ledger row is appended
    hub.close()                                     # once, when the loop stops

Without a `[tracking]` table the hub has no trackers and every call is a no-op; the
trackers' packages (the `tracking` extra) are imported only when a table names them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from autoresearch.task import TaskSpec
from autoresearch.tracking.base import Hub, Record, Setup, Started, Tracker

__all__ = ["Hub", "Record", "Setup", "Started", "Tracker", "make_hub"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_hub(task: TaskSpec, state_dir: Path, tag: str,
             say: Callable[[str], None] = _stderr) -> Hub:
    """The hub for `task`'s `[tracking]` table, started."""
    trackers: list[Tracker] = []
    for name, options in task.tracking.items():
        if name == "mlflow":
            from autoresearch.tracking.mlflow_tracker import MlflowTracker

            trackers.append(MlflowTracker(options))
        elif name == "wandb":
            from autoresearch.tracking.wandb_tracker import WandbTracker

            trackers.append(WandbTracker(options))
    config = {"run": task.run, "editable": ",".join(task.editable),
              "time_budget": task.time_budget, "metric": task.metric.name,
              "direction": task.metric.direction,
              "policy": task.decision.get("policy", "noise-aware")}
    setup = Setup(tag, task.metric.name, task.metric.direction, state_dir, task.root, config)
    return Hub(trackers, setup, say).start()
