"""Measure one commit once: train, evaluate, read the metric, classify the outcome.

Phases, when the task has an `evaluate` command (the trustworthy setup):

1. **train**: `run` in a fresh export of the staged tree (files git ignores never
   reach it, and what it writes never lands in a commit), with
   `AUTORESEARCH_HANDOVER` naming a directory for the model it hands over. Its
   wall clock is measured here.
2. **check**: the tripwire (ledger, refs, hooks, committed files) and the
   eval-only canaries; anything touched makes the experiment `invalid`.
3. **evaluate**: `evaluate` in a second fresh export, in a fresh process. Only its
   output is trusted for the metric; metric-like lines the run printed are
   recorded as `run_reported`, and a run whose own claim of the primary metric
   disagrees with the evaluation is `invalid`. The evaluate command exits with
   `INTEGRITY_EXIT` and an `integrity: ...` line when the model breaks a rule.

Without `evaluate`, the run's own output is the metric source (Karpathy's
original setup), and the trust is only as good as the run's code.

An outcome is a value, never an exception: a crash, a timeout, a missing or
non-finite metric all come back as a `Measurement` with a status and a reason.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoresearch.execution.budget import (
    STOP_ENV,
    Allowance,
    BudgetClock,
    legacy_allowance,
    stop_allowance,
)

# run_checks and baseline_checks are re-exported: the loop imports them from here.
from autoresearch.execution.checks import baseline_checks, error_line, run_checks  # noqa: F401
from autoresearch.execution.evaluate import split_evaluate
from autoresearch.execution.phase import Phase, PhaseRunner
from autoresearch.execution.process import RunResult, log_tail
from autoresearch.execution.sandbox import Access, Sandbox
from autoresearch.integrity.tripwire import Canaries, Tripwire, expand, network_prefix, tampered
from autoresearch.ledger import Experiment
from autoresearch.metrics import parse_metrics, read_metric
from autoresearch.task import ConfigError, TaskSpec
from autoresearch.workspace import Workspace

# Exit status by which an evaluate command says "this model broke a rule" (a causality
# probe failed, the evaluator was patched): the experiment is invalid, not crashed.
INTEGRITY_EXIT = 3
# The run's own report of the metric (Karpathy's summary block) may differ from the
# evaluate phase's by numerics (bf16 vs fp32, batch order); beyond this it is a lie.
SELF_REPORT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Measurement:
    status: str  # "ok" | "crash" | "timeout" | "interrupted" | "invalid"
    reason: str
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    memory_gb: float = 0.0
    seconds: float = 0.0  # wall clock of the training phase, measured by the harness
    exit_code: int | None = None
    log: str = ""
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. run_reported metrics


@dataclass
class Guards:
    """Per-loop integrity state shared by every measurement."""

    tripwire: Tripwire
    canaries: Canaries
    scratch: Path  # parent of the per-phase exports and the handover directory
    export: Callable[[Path], Path]  # writes a fresh copy of the staged tree at the path
    ledger_intact: Callable[[], bool]  # False: a phase wrote the ledger (now rewritten)
    phases: PhaseRunner = field(default_factory=PhaseRunner)
    readonly: tuple[Path, ...] = ()  # data every phase may read (tokenizer, train shards)
    eval_only: tuple[Path, ...] = ()  # data only the trusted scorer sees
    editable: tuple[str, ...] = ()  # removed from the scorer's tree: it never runs them
    network: bool = False
    # Seconds over the budget tolerated (an `Allowance` from `allowance()`: with the stop
    # rule, the grace after the harness's stop); None: not enforced (the baseline).
    allowance: float | None = None
    eval_limit: float | None = None  # seconds the evaluate phase may take; from the baseline
    handover_dir: Path | None = None  # a holdout's model kept aside (default: scratch/handover)

    def tampered(self) -> str | None:
        return tampered(self.tripwire, self.ledger_intact)

    @property
    def handover(self) -> Path:
        return self.handover_dir or self.scratch / "handover"

    def access(self, role: str) -> Access:
        """What each role sees: only the scorer (which runs no proposer code) gets eval data."""
        if role == "run":
            return Access(writable=(self.handover,), readonly=self.readonly,
                          hidden=self.eval_only, network=self.network)
        if role == "check":
            return Access(readonly=self.readonly, hidden=self.eval_only, network=self.network)
        if role == "model":  # weights and code only: no data to train further on
            return Access(readonly=(self.handover,), hidden=self.eval_only)
        if role == "scorer":
            return Access(readonly=(*self.readonly, *self.eval_only, self.handover))
        raise ValueError(role)


def make_guards(task: TaskSpec, ws: Workspace, say: Callable[[str], None],
                ledger_intact: Callable[[], bool]) -> Guards:
    """Build the integrity guards for a tag; refuse to start where one cannot work."""
    wt = ws.worktree
    committed = [p for pat in task.editable for p in wt.glob(pat)]
    committed += [wt / name for name in task.protected]
    eval_only = [expand(p) for p in task.eval_only]
    readonly = [expand(p) for p in task.readonly]
    missing = [str(p) for p in eval_only + readonly if not p.exists()]
    if missing:
        raise ConfigError(f"eval_only/readonly: {', '.join(missing)} does not exist. Prepare "
                          "the data first (e.g. `python prepare.py`), or fix the path.")
    sandbox = Sandbox(task.sandbox, [expand(p) for p in task.sandbox_expose],
                      forbidden=(ws.git_dir, ws.state))
    sandbox.refuse_forbidden([*readonly, *eval_only, *sandbox.expose],
                             "readonly/eval_only/sandbox_expose")
    canaries = Canaries(eval_only)
    if canaries.files and not sandbox.active and \
            not Canaries.supported(canaries.files[0].parent):
        say("note: this filesystem does not record reads (noatime), so reads of eval_only "
            "data during training go undetected; writes to it are still caught.")
        canaries = Canaries(eval_only, reads=False)
    prefix = None
    if not task.network and not sandbox.active:
        prefix = network_prefix()
        if prefix is None and task.network is False:
            raise ConfigError("network = false: cannot cut the network here (no sandbox, and "
                              "`unshare --net` is unavailable; it needs Linux with user "
                              "namespaces). Remove the key to run with network access.")
    if sandbox.active:
        say(f"sandbox: bubblewrap; every phase sees only its own export, the system and the "
            f"venv read-only, {'with' if task.network else 'without'} network")
    else:
        say("sandbox: OFF. " + "; ".join(sandbox.protections_off()) + ".")
    if task.evaluate and not task.model_server:
        say("note: the evaluate command runs the editable code beside the evaluation data; "
            "set `model_server` so the scorer never runs proposer code (see the README).")
    wire = Tripwire.for_runs(ws.admin_dir(), ws.state, ws.branch_file, committed, readonly,
                             ws.git_dir)
    return Guards(wire, canaries, ws.state / "scratch", ws.export, ledger_intact,
                  PhaseRunner(sandbox, task.phase_disk_mb, prefix), tuple(readonly),
                  tuple(eval_only), task.editable, bool(task.network))


def allowance(task: TaskSpec, baseline: Experiment) -> Allowance:
    """Seconds over the budget a run may take, and how they are counted; from the baseline.

    A baseline that announced its first step (`execution.budget`) gets the stop rule: the
    harness starts the budget clock at a run's first step and stops it at the budget, and
    the returned value is the grace a run has to exit after the stop. Otherwise the older
    rule: the baseline's time beyond its budget (start-up and teardown) 1.5 times over,
    plus 5% of the budget, at least 5 s, on the run's total wall time. Either way a run
    whose clock runs slow by more than `smallest_caught_fake` and keeps training is caught.
    """
    # Against the budget the baseline ran with: a resume may change --time-budget.
    ran_with = float(baseline.evidence.get("time_budget", task.time_budget))
    startup = baseline.evidence.get("startup_seconds")
    if startup is not None:
        return stop_allowance(task.time_budget, float(startup),
                              float(baseline.evidence.get("teardown_seconds", 0.0)))
    return legacy_allowance(task.time_budget, max(0.0, baseline.run_seconds - ran_with))


def smallest_caught_fake(task: TaskSpec, slack: float) -> float:
    """The smallest clock-slowing factor the budget check catches (e.g. 1.05 for 5%) in a
    run that keeps training past its budget; with the stop rule, one that also announces
    its first step late gains up to `startup_limit - start-up` more (`execution.budget`)."""
    return 1.0 + slack / task.time_budget


def eval_limit(baseline: Experiment) -> float | None:
    """Seconds the evaluate phase may take: five times the baseline's, at least 30 s.

    Scoring is a fixed amount of work, and model servers hold no data to train on, so the
    limit only needs to bound waste; it is loose because a shared machine's load can
    triple a phase's time (measured here), and an honest run must not become invalid."""
    seconds = baseline.metrics.get("eval_seconds")
    return max(30.0, 5.0 * float(seconds)) if seconds else None


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


def _output(log: Path, limit: int = 4 * 2**20) -> str:
    """The last `limit` bytes of a phase's output: where the summary block is. A run that
    prints gigabytes must not take the harness's memory with it."""
    with open(log, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - limit))
        return fh.read().decode("utf-8", errors="replace")


def _failure(result: RunResult, what: str) -> tuple[str, str] | None:
    tail = log_tail(result.log, 30)
    if result.interrupted:
        return "interrupted", f"{what} interrupted by the user"
    if result.timed_out:
        return "timeout", f"{what} killed at the {result.seconds:.0f}s timeout\n{tail}"
    if result.exit_code != 0:
        quote = error_line(log_tail(result.log, 200))
        said = f": {quote}" if quote else ""
        return "crash", f"{what} exited with code {result.exit_code}{said}\n{tail}"
    return None


def measure(
    task: TaskSpec,
    log: Path,
    env: dict[str, str],
    guards: Guards,
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Measurement:
    """Train (then evaluate, if configured) and read the metric; see the module docstring."""
    handover = guards.handover
    shutil.rmtree(handover, ignore_errors=True)
    handover.mkdir(parents=True)
    # The harness's stop: a file in a directory only the harness writes (read-only inside).
    control = guards.scratch / "control"
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir(parents=True)
    clock = BudgetClock(log, control / "stop", task.time_budget, guards.allowance)
    env = {**env, "AUTORESEARCH_HANDOVER": str(handover)}
    run_dir = guards.export(guards.scratch / "run")
    access = guards.access("run")
    access = replace(access, readonly=(*access.readonly, control))
    guards.tripwire.arm()
    guards.canaries.arm()
    run = guards.phases.run(Phase("run", task.run, run_dir, log, task.timeout,
                                  {**env, "AUTORESEARCH_PHASE": "train",
                                   STOP_ENV: str(control / "stop")}, access, poll=clock.poll),
                            on_start, on_tick, should_stop)
    mem_gb = run.peak_rss_mb / 1024
    # Measured from outside the phase: these, not what the run prints, feed guardrails.
    harness_metrics = {"peak_rss_mb": round(run.peak_rss_mb, 1), "run_seconds": run.seconds}
    notes: dict[str, Any] = clock.notes(run.seconds)

    def result(status: str, reason: str, value: float | None = None,
               metrics: dict[str, float] | None = None) -> Measurement:
        return Measurement(status, reason, value, {**harness_metrics, **(metrics or {})},
                           mem_gb, run.seconds, run.exit_code, str(log), notes)

    # Canaries first: the tripwire's own re-read of the files would update their atimes.
    peeked = guards.canaries.tripped()
    changed = guards.tampered()
    if peeked:
        return result("invalid", "the run touched evaluation-only data: " + ", ".join(peeked[:3]))
    if changed:
        return result("invalid", f"the run changed {changed}")
    if run.violation:
        return result("invalid", run.violation)
    failed = _failure(run, "run")
    if failed:
        return result(*failed)
    if run.leftovers:
        return result("invalid", f"the run left {run.leftovers} process(es) running after it "
                      "exited; they were killed")
    budget, slack = task.time_budget, guards.allowance
    overstayed = clock.overstayed(run.seconds)  # it ended, but after the stop's grace
    if overstayed:
        return result("invalid", overstayed)
    if slack is not None and not (isinstance(slack, Allowance) and slack.stops) and \
            run.seconds > budget + slack:
        return result("invalid", f"over budget: the run took {run.seconds:.1f}s, more than "
                      f"the {budget:.0f}s budget plus a {slack:.1f}s startup allowance")
    source = log
    if task.evaluate:
        run_reported = parse_metrics(_output(log))
        if run_reported:
            notes["run_reported"] = run_reported  # informational, never trusted
        source = log.with_suffix(".eval.log")
        guards.tripwire.arm()
        ev = evaluate_phase(task.evaluate, source, {**env, "AUTORESEARCH_PHASE": "evaluate"},
                            task, guards, on_start, should_stop)
        harness_metrics["eval_seconds"] = round(ev.seconds, 2)
        changed = guards.tampered()
        if changed:
            return result("invalid", f"the evaluate phase changed {changed}")
        if ev.violation:
            return result("invalid", f"evaluate: {ev.violation}")
        if ev.exit_code == INTEGRITY_EXIT:
            text = _output(source)
            lines = [ln for ln in text.splitlines() if ln.startswith("integrity:")]
            return result("invalid", "evaluate: " + (lines[-1] if lines else "integrity check "
                                                    "failed") + f"\n{log_tail(source, 10)}")
        failed = _failure(ev, "evaluate")
        if failed:
            return result(*failed)
    reading = read_metric(_output(source), task.metric.name)
    if "peak_vram_mb" in reading.metrics:  # Karpathy's memory column is GPU memory
        mem_gb = reading.metrics["peak_vram_mb"] / 1024
    if reading.value is None:
        return result("crash", f"{reading.problem}\n{log_tail(source, 30)}", None,
                      reading.metrics)
    claimed = notes.get("run_reported", {}).get(task.metric.name)
    if claimed is not None and _disagree(claimed, reading.value):
        return result("invalid", f"the run reported {task.metric.name} {claimed:g} but the "
                      f"evaluate phase measured {reading.value:g}", reading.value,
                      reading.metrics)
    return result("ok", "", reading.value, reading.metrics)


def _disagree(claimed: float, measured: float) -> bool:
    """A self-report off by more than SELF_REPORT_TOLERANCE (relative) is a lie, not noise."""
    return not math.isfinite(claimed) or \
        abs(claimed - measured) > SELF_REPORT_TOLERANCE * max(abs(measured), 1e-12)


def score_holdout(task: TaskSpec, log: Path, env: dict[str, str],
                  guards: Guards) -> float | None:
    """The metric on the holdout split, from the handover of the latest run (kept runs only)."""
    if not task.holdout:
        return None
    env = {**env, "AUTORESEARCH_HANDOVER": str(guards.handover),
           "AUTORESEARCH_PHASE": "holdout"}
    guards.tripwire.arm()
    res = evaluate_phase(task.holdout, log, env, task, guards)
    if guards.tampered() or not res.ok:  # a holdout phase that tampers scores nothing
        return None
    return read_metric(_output(log), task.metric.name).value


def evaluate_phase(command: str, log: Path, env: dict[str, str], task: TaskSpec, guards: Guards,
                   on_start: Callable[[int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> RunResult:
    """Score the handed-over model: a trusted scorer with model servers, or (without
    `model_server`) one command that runs the editable code beside the evaluation data."""
    timeout = min(task.timeout, guards.eval_limit or task.timeout)
    limited = timeout < task.timeout  # the baseline-derived limit is the tighter one
    if task.model_server:
        res = split_evaluate(command, task.model_server, log, env, timeout, guards,
                             on_start, should_stop)
    else:
        res = guards.phases.run(Phase("evaluate", command,
                                      guards.export(guards.scratch / "eval"), log, timeout, env,
                                      guards.access("scorer")), on_start, None, should_stop)
    if res.timed_out and limited:  # killed at the baseline-derived limit: a broken rule
        return replace(res, violation=f"scoring took over {timeout:.0f}s, five times the "
                       "baseline's: a model may not work beyond answering its inputs")
    return res
