"""One unit of work an executor runs: measure a tree once, run its checks, or score its holdout.

A job names a git tree, never a directory: the slot that runs it exports the tree
into its own scratch folder (or, on Ray, unpacks the tar the driver shipped), so
no two jobs share a tree on disk and nothing depends on a shared filesystem.

`run_job` is the one function both executors call; it goes through the one
sandboxed phase runner (`execution.measure` -> `execution.phase`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.measure import (
    Guards,
    Measurement,
    measure,
    run_checks,
    run_env,
    score_holdout,
)
from autoresearch.task import TaskSpec


@dataclass(frozen=True)
class Job:
    kind: str  # "measure" | "checks" | "holdout"
    exp_id: int
    tree: str  # the git tree to export and run
    sample: int = 0  # measure: which repeat of the tree (seed offset, log name)
    label: str = ""  # what the display shows
    seed: int = 42  # AUTORESEARCH_SEED = seed + sample
    verdict: Verdict | None = None  # checks: the keep they would confirm
    handover: str = ""  # holdout: the model a measure job kept (see `keep_handover`)
    keep_handover: bool = False  # measure: move the handed-over model aside for a holdout
    log: str = ""  # the log's file name, when not the default for kind and sample
    # measure: early stopping. A snapshot of the policy's `Pruner` (picklable: curves only)
    # and the key of the incumbent's curves in it; the run is watched against them.
    prune: Any = None
    prune_ref: str = ""


@dataclass(frozen=True)
class Done:
    job: Job
    result: Any  # Measurement (measure), Verdict (checks), float | None (holdout)
    worker: str
    node: str = ""
    started: float = 0.0
    finished: float = 0.0
    handover: str = ""  # measure with keep_handover: where the model now is


@dataclass(frozen=True)
class JobEnv:
    """What every job of a tag shares; picklable, so a Ray task gets it too."""

    task: TaskSpec
    tag: str
    logs: Path
    slot_env: dict[str, str] = field(default_factory=dict)  # CUDA_VISIBLE_DEVICES, threads


def log_name(job: Job) -> str:
    if job.log:
        return job.log
    if job.kind == "measure":
        return f"{job.exp_id:04d}.log" if job.sample == 0 else f"{job.exp_id:04d}-{job.sample}.log"
    if job.kind == "holdout":
        return f"{job.exp_id:04d}.holdout.log"
    return f"{job.exp_id:04d}.checks.log"


def run_job(job: Job, env: JobEnv, guards: Guards, export: Callable[[Path], Path],
            on_start: Callable[[int], None] | None = None,
            on_tick: Callable[[float], None] | None = None) -> tuple[Any, str]:
    """Run `job` with `guards` (the slot's phase runner and scratch), exporting its tree
    with `export`; return (result, handover path or "")."""
    guards = replace(guards, export=export)
    run_vars = {**run_env(env.task, env.tag, job.exp_id, job.seed + job.sample),
                **env.slot_env}
    env.logs.mkdir(parents=True, exist_ok=True)
    if job.kind == "measure":
        log = env.logs / log_name(job)
        watch = job.prune.watch(job.prune_ref, log) if job.prune is not None else None
        m: Measurement = measure(env.task, log, run_vars, guards, on_start, on_tick, watch)
        stopped_by_user = guards.phases.stop is not None and guards.phases.stop.is_set()
        if watch is not None and watch.decision is not None and m.status == "interrupted" \
                and not stopped_by_user:  # a stop the user asked for is never a prune
            m = replace(m, status="pruned", reason=watch.decision.reason,
                        notes={**m.notes, "prune": watch.decision.evidence})
        kept = ""
        if job.keep_handover and m.status == "ok" and env.task.holdout:
            # The slot's next job wipes its handover; a holdout asked for later needs this one.
            dest = guards.scratch / "kept-handover" / f"{job.exp_id}-{job.sample}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(guards.handover), dest)
            kept = str(dest)
        return m, kept
    if job.kind == "checks":
        assert job.verdict is not None
        return run_checks(env.task, guards, env.logs, job.exp_id, run_vars, job.verdict), ""
    if job.kind == "holdout":
        if job.handover:
            guards = replace(guards, handover_dir=Path(job.handover))
        value = score_holdout(env.task, env.logs / log_name(job), run_vars, guards)
        if job.handover:
            shutil.rmtree(job.handover, ignore_errors=True)
        return value, ""
    raise ValueError(f"unknown job kind {job.kind!r}")
