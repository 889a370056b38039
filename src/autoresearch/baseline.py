"""The baseline: the unmodified task run `baseline_runs()` times, before any candidate.

Its samples are the first incumbent's; its timings set the budget allowance and the
scoring limit; its spread is the first noise estimate, printed with the smallest gain
the night can tell from it. A baseline that fails stops the night: nothing can be
compared without one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from autoresearch.decisions.policy import Incumbent
from autoresearch.execution.budget import describe
from autoresearch.execution.jobs import Done, Job
from autoresearch.execution.measure import allowance, eval_limit
from autoresearch.ledger import Experiment

if TYPE_CHECKING:
    from autoresearch.loop import Loop


def run_now(loop: Loop, job: Job) -> Done:
    """Run one job to its end (the baseline is not pipelined: everything waits on it)."""
    if len(loop.executor.slots) == 1:
        loop.display.start(job.exp_id, job.label)
    loop.executor.submit(job)
    while True:
        done = loop.executor.poll(0.2)
        if done:
            loop.display.stop_live()
            return done[0]


def run_baseline(loop: Loop) -> str | None:
    """Measure the baseline and record it; None, or why the night cannot start."""
    task, point, policy = loop.task, loop.point, loop.policy
    exp_id = point.next_id()
    tree = loop.ws.tree_of(point.tip)
    base = Experiment(id=exp_id, status="keep", description="baseline", parent=point.tip,
                      started=time.time(), proposer="baseline", diff={"tree": tree})
    point.hold(base, tree)
    samples: list[float] = []
    jobs: list[list[Any]] = []
    done = None
    for k in range(max(1, policy.baseline_runs())):
        done = run_now(loop, Job("measure", exp_id, tree, k, "baseline" if k == 0 else
                                 f"baseline (repeat {k})", loop.options.seed,
                                 keep_handover=bool(task.holdout)))
        m = done.result
        jobs.append(["measure", done.worker, round(done.started, 3), round(done.finished, 3)])
        if m.status != "ok" or m.metric is None or loop.aborted:
            break
        samples.append(m.metric)
        point.observe_curves(tree, m.log)
    assert done is not None
    m = done.result
    ok = m.status == "ok" and bool(samples)
    holdout = None
    if ok and task.holdout and done.handover:
        holdout = run_now(loop, Job("holdout", exp_id, tree, 0, "holdout", loop.options.seed,
                                    handover=done.handover)).result
    sensitivity = None
    if ok:  # the noise, and the smallest gain this night can tell from it
        policy.observe(samples)
        sens = policy.sensitivity(Incumbent(tuple(samples), m.metrics, m.metrics))
        if sens is not None:
            sensitivity = sens.to_json()
            loop.display.message("noise: " + sens.line(task.metric.name))
    exp = replace(base, status="keep" if ok else m.status,
                  metric=sum(samples) / len(samples) if ok else None, metrics=m.metrics,
                  holdout=holdout, reason="baseline" if ok else m.reason,
                  memory_gb=m.memory_gb, run_seconds=m.seconds, exit_code=m.exit_code,
                  worker=done.worker, log=m.log, evidence={
                      **m.notes, "samples": samples, "jobs": jobs,
                      "time_budget": task.time_budget,
                      **({"sensitivity": sensitivity} if sensitivity else {})})
    point.finish(exp, tree)
    if not ok:
        first = m.reason.splitlines()[0] if m.reason else m.status
        loop.display.message(f"The unmodified baseline did not produce {task.metric.name}: "
                             f"{first}. Fix the task (see {m.log}) and run again; nothing "
                             "can be compared without a baseline.")
        return "the baseline failed; see its log and fix the task"
    limits_from(loop, exp)
    loop.display.message(describe(task.time_budget, loop.guards.allowance or 0.0)
                         + (f"; scoring may take {loop.guards.eval_limit:.0f}s"
                            if loop.guards.eval_limit else ""))
    return None


def limits_from(loop: Loop, baseline: Experiment) -> None:
    """Budget allowance and scoring limit, both derived from the baseline's timings."""
    loop.guards.allowance = allowance(loop.task, baseline)
    loop.guards.eval_limit = eval_limit(baseline)
    if getattr(loop, "executor", None):
        loop.executor.set_limits(loop.guards.allowance, loop.guards.eval_limit)
