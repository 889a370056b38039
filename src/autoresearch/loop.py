"""The experiment loop: a proposer pool, an executor and one decision point.

    proposers.pool.ProposerPool  --tickets-->  decisions.point.DecisionPoint  --jobs-->
    execution.executor.Executor  --done-->     decisions.point.DecisionPoint

The pool proposes (ahead of time when `pipeline` > 0), the executor runs jobs on
worker slots, and the decision point, on this thread only, owns the ledger, the
branch and the policy. Outcomes (crash, timeout, invalid...) are ledger rows,
never exceptions; exceptions are for misconfiguration (ConfigError,
ProposerError).

Stopping: the first Ctrl-C, SIGTERM or SIGHUP (or a --hours/--max-* limit) stops
proposing at once and lets every experiment in flight finish and be recorded.
A second signal aborts: running phases are killed and their experiments are
recorded `interrupted`, to be run again on the next start.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.baseline import limits_from, run_baseline
from autoresearch.decisions.point import DecisionPoint
from autoresearch.decisions.policy import Policy
from autoresearch.decisions.protocol import judged_since_keep, remeasure_due
from autoresearch.execution.executor import Executor, LocalExecutor, make_slots
from autoresearch.execution.jobs import Job, JobEnv
from autoresearch.execution.measure import (
    baseline_checks,
    make_guards,
    run_env,
)
from autoresearch.execution.process import log_tail
from autoresearch.integrity.tripwire import Canaries, Tripwire, tampered
from autoresearch.ledger import Experiment, Ledger
from autoresearch.proposers.base import Context, Proposal, Proposer
from autoresearch.proposers.pool import ProposerPool, Ticket
from autoresearch.resume import interrupted_to_rerun, owner_mark, protected_hashes, recover
from autoresearch.stopping import EXIT_CODES, drop_unstarted, room, stop_reason
from autoresearch.task import ConfigError, TaskSpec
from autoresearch.tracking import Hub, make_hub
from autoresearch.ui.display import Display
from autoresearch.workspace import Workspace


@dataclass(frozen=True)
class LoopOptions:
    max_experiments: int | None = None  # candidates in the tag's ledger, baseline excluded
    hours: float | None = None  # wall clock of this invocation
    max_failures: int = 10  # consecutive crash/invalid/timeout/checks_failed/duplicate
    max_cost: float | None = None  # USD summed over the tag's proposals
    seed: int = 42  # AUTORESEARCH_SEED of a commit's first run; repeats add 1, 2, ...
    workers: int = 1  # experiments run at once
    pipeline: int | None = None  # proposals kept ready; None: one per worker (sandbox only)
    devices: tuple[str, ...] | None = None  # GPUs for the slots; None: detected
    stale: str = "rerun"  # a keep measured on an older incumbent: "rerun" or "discard"
    backend: str = "local"  # "local" slots, or "ray" (execution.ray_backend)
    ray_address: str | None = None
    num_cpus: float = 1.0  # per experiment, on Ray
    num_gpus: float = 0.0


class Loop:
    def __init__(self, task: TaskSpec, ws: Workspace, proposer: Proposer, policy: Policy,
                 options: LoopOptions, display: Display):
        self.task, self.ws, self.proposer, self.policy = task, ws, proposer, policy
        self.options, self.display = options, display
        self.ledger = Ledger(ws.state, task.metric.name)
        self.logs = ws.state / "logs"
        self.signal: int | None = None  # the first stop signal received
        self.aborted = False
        # Built by _setup; a signal before then finds none of them (getattr below).
        self.pool: ProposerPool
        self.executor: Executor
        self.point: DecisionPoint
        self.tracking: Hub
        self._last_failure: str | None = None

    # -- entry point --------------------------------------------------------------
    def run(self) -> str:
        """Run until a stop condition; return why it stopped."""
        self.ws.state.mkdir(parents=True, exist_ok=True)
        # Inherited by everything this harness starts (proposers, runs, checks), so the
        # next start can find what a SIGKILLed predecessor left behind.
        os.environ["AUTORESEARCH_STATE"] = str(self.ws.state)
        os.environ["AUTORESEARCH_OWNER"] = owner_mark(self.ws.state)
        with self.ws.lock(), self._signals():
            started = time.monotonic()
            self._setup()
            self.tracking = make_hub(self.task, self.ws.state, self.ws.tag,
                                     self.display.message)
            self.proposer.setup(self.ledger.experiments)
            try:
                if not self.ledger.kept():
                    # The gate runs once on the unmodified task: a broken check must stop the
                    # night here, not block the first change that would be kept.
                    failed = baseline_checks(
                        self.task, self.guards, self.logs,
                        run_env(self.task, self.ws.tag, self.ledger.next_id(), self.options.seed),
                        lambda: self.aborted)
                    if failed:
                        self.display.message(failed)
                        return "the baseline failed its checks; see above and fix them"
                    problem = run_baseline(self)
                    if problem:
                        return problem
                return self._night(started)
            finally:
                if getattr(self, "pool", None):
                    self.pool.cancel()
                    self.pool.join()  # its subprocess is killed by the cancel; let it go
                self.proposer.close()
                self.display.stop_live()
                if getattr(self, "executor", None):
                    self.executor.close()
                if getattr(self, "tracking", None):
                    self.tracking.close()  # waits for queued events, never for experiments
                self.ws.close_worktree()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signal), 1) if self.signal else 0

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """First signal: finish what runs, then stop. Second: abort what runs."""
        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None:
                self.aborted = True
                self.display.message("aborting: stopping the running phases")
                if getattr(self, "executor", None):
                    self.executor.abort()
                if getattr(self, "point", None):
                    self.point.aborting = True
                return
            self.signal = signum
            if getattr(self, "pool", None):
                self.pool.cancel()
            self.display.message("stopping: no new experiments; the ones running finish and "
                                 "are recorded (signal again to abort them)")

        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {s: signal.signal(s, handler) for s in sigs}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -- set-up -------------------------------------------------------------------
    def _setup(self) -> None:
        tip = recover(self.ws, self.ledger, self.ws.state / "pending.json",
                      self.task.metric.name)
        self.guards = make_guards(self.task, self.ws, self.display.message, self.ledger.intact)
        o = self.options
        pipeline = o.pipeline if o.pipeline is not None else \
            (o.workers if self.proposer.ahead else 0)
        sandboxed = self.guards.phases.sandbox.active
        self.parallel = o.workers > 1 or pipeline > 0 or o.backend != "local"
        if self.parallel and not sandboxed:
            if o.workers > 1 or o.pipeline or o.backend != "local":
                raise ConfigError("--workers, --pipeline and --backend need the bubblewrap "
                                  "sandbox (the tripwires that stand in for it cannot tell "
                                  "concurrent experiments apart). Install bubblewrap, or "
                                  "run one experiment at a time.")
            self.parallel, pipeline = False, 0
        if self.parallel:  # the sandbox is the boundary; tripwires would see each other
            self.guards = replace(self.guards, tripwire=Tripwire([]), canaries=Canaries([]),
                                  ledger_intact=lambda: True)
        if o.max_cost is not None and pipeline > 0:
            # A proposal made ahead is paid before the cap can see it.
            self.display.message("--max-cost: proposals are made only when a worker is free, "
                                 "so the cap is never overshot by proposals made ahead")
            pipeline = 0
        self.pipeline = pipeline
        self.point = DecisionPoint(self.task, self.ws, self.ledger, self.policy, o.seed,
                                   protected_hashes(self.ws, self.task.protected),
                                   self.display.message, self._finished, o.stale)
        assert self.point.tip == tip
        self._public = [replace(e, holdout=None) for e in self.ledger.experiments]
        self._proposer_wire = Tripwire.for_proposer(self.ws.admin_dir(), self.ws.state,
                                                   self.ws.branch_file, self.ws.git_dir)
        if self.ledger.kept():
            limits_from(self, self.ledger.kept()[0])
        for e in self.ledger.experiments:  # a resumed policy relearns the noise it saw
            if len(e.evidence.get("samples") or []) > 1:
                self.policy.observe(e.evidence["samples"])
            if e.status in ("keep", "remeasure") and e.diff.get("tree"):
                self.point.observe_curves(e.diff["tree"], e.log)  # the pruner's curves
            if e.status in ("crash", "timeout") and e.log:
                self._last_failure = log_tail(Path(e.log))
        self.executor = self._ray_executor() if o.backend == "ray" else self._local_executor()
        self.pool = ProposerPool(self.proposer, self._context, self._reserve_id,
                                 lambda: self.point.tip, self.ws.export_tree,
                                 self.ws.state / "scratch", background=self.parallel)
        self._reserved = 0
        self._reruns = interrupted_to_rerun(self.ledger.experiments)
        self.display.seed(self.ledger.experiments)

    def _local_executor(self) -> LocalExecutor:
        slots = make_slots(self.options.workers, self.options.devices)
        env = JobEnv(self.task, self.ws.tag, self.logs)
        single = len(slots) == 1
        return LocalExecutor(slots, env, self.guards, self.ws.state / "scratch",
                             self.ws.export_tree, self._job_started,
                             (lambda job, t: self.display.tick(t)) if single else None)

    def _ray_executor(self) -> Executor:
        from autoresearch.execution.ray_backend import RayExecutor

        o = self.options
        return RayExecutor(o.workers, JobEnv(self.task, self.ws.tag, self.logs), self.guards,
                           self.ws.archive, address=o.ray_address, num_cpus=o.num_cpus,
                           num_gpus=o.num_gpus)

    def _job_started(self, job: Job, pgid: int) -> None:
        self.point.record_pgid(job.exp_id, pgid)

    def _night(self, started: float) -> str:
        point = self.point
        why: str | None = None
        while True:
            if why is None and (why := self._stop_reason(started)) is not None:
                if not why.startswith("reached --max-experiments"):
                    self._drop_unstarted()  # a stop ends what runs; nothing new begins
            if why is None:
                self._fill()
            if self.aborted:
                self._drop_unstarted()
            self._dispatch()
            if why is not None and not point.active and not point.queue:
                return "aborted by the user" if self.aborted else why
            self._write_live()
            for done in self.executor.poll(0.2 if self.executor.running() else 0.0):
                if len(self.executor.slots) == 1:
                    self.display.stop_live()
                point.on_done(done)
            self._dispatch()  # free workers start first; the bookkeeping follows
            point.settle()

    def _write_live(self) -> None:
        """What `status` shows of a running night: each slot's experiment and the backlog."""
        slots: dict[str, int | None] = {s.name: None for s in self.executor.slots}
        for slot, job in self.executor.running().items():
            slots[slot] = job.exp_id
        now = {"slots": slots, "backlog": self.pool.backlog()}
        if now != getattr(self, "_live", None):
            self._live = now
            path = self.ws.state / "live.json"
            path.with_suffix(".tmp").write_text(json.dumps(now))
            os.replace(path.with_suffix(".tmp"), path)

    def _dispatch(self) -> None:
        point = self.point
        while self.executor.free() and point.queue and not self.aborted:
            job = point.queue.popleft()
            if job.kind == "measure" and job.sample == 0 and job.exp_id in point.active:
                cand = point.active[job.exp_id]
                self.tracking.started(job.exp_id, cand.base.description, cand.base.parent,
                                      "")
            if len(self.executor.slots) == 1:
                self.display.start(job.exp_id, job.label)
            self.executor.submit(job)

    def _fill(self) -> None:
        """Admit proposals while a slot is free and nothing else waits for one."""
        point = self.point
        # Interrupted experiments go first; the pool starts only once they are admitted, so
        # ids are reserved in the order experiments start.
        # Proposing ahead, a ready proposal is admitted at once (staged, checked, its first
        # run queued), so a worker that frees up starts it without waiting on git.
        ahead = self.pipeline if self.pool.background else 0
        want = 0 if self._reruns else min(self.executor.free() + ahead - len(point.queue),
                                          self._room())
        self.pool.want(max(0, want))
        while self.executor.free() + ahead > len(point.queue) and self._room() > 0:
            ticket: Ticket | None
            if self._reruns:
                ticket = self._rerun_ticket(self._reruns.pop(0))
            else:
                if not self.pool.background:
                    self._proposer_wire.arm()
                ticket = self.pool.take(0.0 if self.executor.running() else 0.2)
                if ticket is None:
                    return
                if ticket.fatal is not None:
                    raise ticket.fatal
            meddled = None
            if not self.pool.background and ticket.rerun_of is None:
                # Sequential: the tripwire, armed just before proposing, stands in for the sandbox.
                meddled = tampered(self._proposer_wire, self.ledger.intact)
                if meddled:
                    self.ws.restore(ticket.parent)
            if self.signal is not None:  # stopped while proposing: nothing ran, nothing to record
                return
            point.admit(ticket, self.proposer.name, meddled)
            self._dispatch()

    def _rerun_ticket(self, e: Experiment) -> Ticket:
        """An interrupted experiment, exported again, to run under a new id."""
        exp_id = self._reserve_id()
        workdir = self.ws.export_tree(e.diff["tree"], self.ws.state / "scratch" /
                                      f"propose-{exp_id}")
        desc = e.description.removesuffix(" (re-run after interruption)")
        # Made on its own parent: if the incumbent moved since, a keep is merged onto it.
        return Ticket(exp_id, e.parent, workdir, Proposal(
            f"{desc} (re-run after interruption)"), time.time(), 0.0, rerun_of=e.id)

    def _reserve_id(self) -> int:
        # Ids are reserved in the order proposals start, which may run ahead of the ledger.
        self._reserved = max(self._reserved + 1, self.point.next_id())
        return self._reserved

    def _context(self, exp_id: int, parent: str, workdir: Path) -> Context:
        files = {}
        for pattern in self.task.editable:
            for path in sorted(workdir.glob(pattern)):
                if path.is_file():
                    files[path.relative_to(workdir).as_posix()] = path.read_text(
                        encoding="utf-8", errors="replace")
        feedback, self.point.feedback = self.point.feedback, None
        return Context(
            experiment_id=exp_id, workdir=workdir, repo=self.ws.worktree,
            phases=self.guards.phases.for_slot((), self.pool.cancelled),
            program=self.task.program_text(workdir), files=files,
            editable=self.task.editable, metric=self.task.metric,
            time_budget=self.task.time_budget,
            # The holdout score is for humans: a proposer that saw it could overfit it too.
            history=tuple(self._public), last_failure=self._last_failure, feedback=feedback)

    def _drop_unstarted(self) -> None:
        started = {job.exp_id for job in self.executor.running().values()}
        drop_unstarted(self.point, started, self.aborted)

    def _room(self) -> int:
        return room(self.ledger.experiments,
                    sum(not c.remeasure for c in self.point.active.values()), self.options)

    def _stop_reason(self, started: float) -> str | None:
        if self.signal is not None:
            return "stopped by the user" if not self.aborted else "aborted by the user"
        return stop_reason(self.ledger.experiments,
                           sum(c.base.cost_usd for c in self.point.active.values()),
                           self.options, started, self.logs)

    # -- after each row -------------------------------------------------------------------
    def _finished(self, exp: Experiment) -> None:
        if getattr(self, "tracking", None):
            self.tracking.finished(exp)
        self._public.append(replace(exp, holdout=None))
        if exp.status in ("crash", "timeout") and exp.log:
            self._last_failure = log_tail(Path(exp.log))
        self.pool.observe(exp)
        self.display.finish(exp)
        rows = self.ledger.experiments
        since = judged_since_keep([(e.status, e.proposer != "harness" and bool(
            e.evidence.get("samples"))) for e in rows])
        if exp.status not in ("keep", "remeasure") and exp.proposer != "baseline" \
                and self.signal is None and remeasure_due(self.policy, since) \
                and not any(c.remeasure for c in self.point.active.values()):
            self.point.remeasure()
