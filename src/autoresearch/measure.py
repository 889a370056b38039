"""Measure one commit once: run, optionally evaluate, parse the metric, classify the outcome.

An outcome is a value, never an exception: a crash, a timeout, a missing or
non-finite metric all come back as a `Measurement` with a status and a reason
holding the log tail, ready to become a ledger row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.metrics import read_metric
from autoresearch.runner import RunResult, log_tail, run_command
from autoresearch.task import TaskSpec


@dataclass(frozen=True)
class Measurement:
    status: str  # "ok" | "crash" | "timeout" | "interrupted"
    reason: str
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    memory_gb: float = 0.0
    seconds: float = 0.0
    exit_code: int | None = None
    log: str = ""


def run_env(task: TaskSpec, tag: str, exp_id: int, seed: int) -> dict[str, str]:
    """The environment of an experiment: the harness's, plus the budget and a seed.

    The harness's own interpreter directory goes first on PATH so that
    `run = "python train.py"` finds the venv autoresearch runs from, activated or not.
    """
    env = dict(os.environ)
    budget = task.time_budget
    env["AUTORESEARCH_TIME_BUDGET"] = str(int(budget)) if budget.is_integer() else str(budget)
    env["AUTORESEARCH_SEED"] = str(seed)
    env["AUTORESEARCH_EXPERIMENT"] = str(exp_id)
    env["AUTORESEARCH_TAG"] = tag
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _failure(result: RunResult, what: str) -> tuple[str, str] | None:
    tail = log_tail(result.log, 30)
    if result.interrupted:
        return "interrupted", f"{what} interrupted by the user"
    if result.timed_out:
        return "timeout", f"{what} killed at the {result.seconds:.0f}s timeout\n{tail}"
    if result.exit_code != 0:
        return "crash", f"{what} exited with code {result.exit_code}\n{tail}"
    return None


def measure(
    task: TaskSpec,
    workdir: Path,
    log: Path,
    env: dict[str, str],
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Measurement:
    """Run the task's `run` (then `evaluate`, if configured) in `workdir` and read the metric."""
    run = run_command(task.run, workdir, log, task.timeout, env, on_start, on_tick, should_stop)
    mem_gb = run.peak_rss_mb / 1024

    def result(status: str, reason: str, value: float | None = None,
               metrics: dict[str, float] | None = None) -> Measurement:
        return Measurement(status, reason, value, metrics or {}, mem_gb, run.seconds,
                           run.exit_code, str(log))

    failed = _failure(run, "run")
    if failed:
        return result(*failed)
    source = log
    if task.evaluate:
        source = log.with_suffix(".eval.log")
        ev = run_command(task.evaluate, workdir, source, task.timeout, env, on_start, None,
                         should_stop)
        failed = _failure(ev, "evaluate")
        if failed:
            return result(*failed)
    reading = read_metric(source.read_text(encoding="utf-8", errors="replace"), task.metric.name)
    if "peak_vram_mb" in reading.metrics:  # Karpathy's memory column is GPU memory
        mem_gb = reading.metrics["peak_vram_mb"] / 1024
    if reading.value is None:
        reason = f"{reading.problem}\n{log_tail(source, 30)}"
        return result("crash", reason, None, reading.metrics)
    return result("ok", "", reading.value, reading.metrics)
