"""The experiment loop: propose, enforce scope, run, decide, record, repeat.

Each experiment finishes in the order commit object -> ledger row (fsync) ->
refs -> pending.json removed, so `autoresearch.resume` can repair a harness
killed at any point. Outcomes (crash, timeout, invalid...) are ledger rows, never
exceptions; exceptions are for misconfiguration (ConfigError, ProposerError).
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

from autoresearch.decisions.policy import Candidate, Incumbent, Policy, Verdict
from autoresearch.decisions.simplicity import lines_delta
from autoresearch.execution.measure import (
    Measurement,
    allowance,
    eval_limit,
    make_guards,
    measure,
    run_checks,
    run_env,
    score_holdout,
    smallest_caught_fake,
)
from autoresearch.execution.process import log_tail
from autoresearch.integrity.scope import scope_problem
from autoresearch.integrity.tripwire import Tripwire, tampered
from autoresearch.ledger import FAILURES, Experiment, Ledger
from autoresearch.proposers.base import Context, Proposal, Proposer
from autoresearch.resume import protected_hashes, recover
from autoresearch.task import TaskSpec
from autoresearch.ui.display import Display
from autoresearch.workspace import Workspace


@dataclass(frozen=True)
class LoopOptions:
    max_experiments: int | None = None  # candidates in the tag's ledger, baseline excluded
    hours: float | None = None  # wall clock of this invocation
    max_failures: int = 10  # consecutive crash/invalid/timeout/checks_failed/duplicate
    max_cost: float | None = None  # USD summed over the tag's proposals
    seed: int = 42  # AUTORESEARCH_SEED of a commit's first run; repeats add 1, 2, ...


class Loop:
    def __init__(self, task: TaskSpec, ws: Workspace, proposer: Proposer, policy: Policy,
                 options: LoopOptions, display: Display):
        self.task, self.ws, self.proposer, self.policy = task, ws, proposer, policy
        self.options, self.display = options, display
        self.ledger = Ledger(ws.state, task.metric.name)
        self.logs = ws.state / "logs"
        self._pending_path = ws.state / "pending.json"
        self._stop_requested = False
        self._feedback: str | None = None
        self._last_failure: str | None = None
        self._pending: dict[str, Any] = {}
        self._tip = ""  # the run branch's commit, tracked here to save a git call per step
        self._trees: dict[str, Experiment] = {}  # evaluated tree -> first experiment with it
        self._start_sizes: dict[str, int | None] = {}  # editable path -> size at the baseline

    # -- entry point --------------------------------------------------------------
    def run(self) -> str:
        """Run until a stop condition; return why it stopped."""
        self.ws.state.mkdir(parents=True, exist_ok=True)
        # Inherited by everything this harness starts (proposers, runs, checks), so the
        # next start can find what a SIGKILLed predecessor left behind.
        os.environ["AUTORESEARCH_STATE"] = str(self.ws.state)
        with self.ws.lock(), self._signals():
            started = time.monotonic()
            self._recover()
            self.display.seed(self.ledger.experiments)
            self.proposer.setup(self.ledger.experiments)
            try:
                if not self.ledger.kept():
                    if not self._baseline():
                        return "the baseline failed; see its log and fix the task"
                while (why := self._stop_reason(started)) is None:
                    self._experiment()
                return why
            finally:
                self.proposer.close()
                self.display.stop_live()
                self.ws.close_worktree()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """First Ctrl-C (or SIGTERM) ends the current run cleanly; a second one aborts."""
        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.display.message("stopping: ending the current experiment cleanly "
                                 "(press Ctrl-C again to abort)")

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -- resume -------------------------------------------------------------------
    def _write_pending(self, **state: Any) -> None:
        self._pending = state
        tmp = self._pending_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._pending_path)

    def _recover(self) -> None:
        self._tip = recover(self.ws, self.ledger, self._pending_path, self.task.metric.name)
        for e in self.ledger.experiments:
            self._remember_tree(e)
        self._public = [replace(e, holdout=None) for e in self.ledger.experiments]
        self._protected_hashes = protected_hashes(self.ws, self.task.protected)
        self._proposer_wire = Tripwire.for_proposer(self.ws.admin_dir(), self.ws.state,
                                                   self.ws.branch_file, self.ws.git_dir)
        self._guards = make_guards(self.task, self.ws, self.display.message, self.ledger.intact)
        if self.ledger.kept():
            self._limits_from(self.ledger.kept()[0])
        for e in self.ledger.experiments:  # a resumed policy relearns the noise it saw
            if len(e.evidence.get("samples") or []) > 1:
                self.policy.observe(e.evidence["samples"])
        for exp in reversed(self.ledger.experiments):
            if exp.status in ("crash", "timeout") and exp.log:
                self._last_failure = log_tail(Path(exp.log))
                break

    # -- stop conditions ----------------------------------------------------------
    def _stop_reason(self, started: float) -> str | None:
        rows = self.ledger.experiments
        o = self.options
        candidates = [e for e in rows if e.proposer not in ("baseline", "harness")]
        if self._stop_requested:
            return "stopped by the user"
        if o.max_experiments is not None and len(candidates) >= o.max_experiments:
            return f"reached --max-experiments {o.max_experiments}"
        if o.hours is not None and time.monotonic() - started >= o.hours * 3600:
            return f"reached --hours {o.hours}"
        if o.max_cost is not None and sum(e.cost_usd for e in rows) >= o.max_cost:
            return f"reached --max-cost ${o.max_cost:.2f}"
        streak = 0
        for e in reversed(candidates):
            if e.status not in (*FAILURES, "duplicate"):
                break
            streak += 1
        if streak >= o.max_failures:
            return (f"{streak} failed experiments in a row (--max-failures {o.max_failures}); "
                    "read the last logs in " + str(self.logs))
        return None

    # -- one measurement ----------------------------------------------------------
    def _measure(self, exp_id: int, sample: int, description: str) -> Measurement:
        log = self.logs / (f"{exp_id:04d}.log" if sample == 0 else f"{exp_id:04d}-{sample}.log")
        env = run_env(self.task, self.ws.tag, exp_id, self.options.seed + sample)
        pending = self._pending

        def on_start(pgid: int) -> None:
            self._write_pending(**{**pending, "pgid": pgid})

        self.display.start(exp_id, description)
        try:
            return measure(self.task, log, env, self._guards, on_start,
                           self.display.tick, lambda: self._stop_requested)
        finally:
            self.display.stop_live()

    def _incumbent(self) -> tuple[Experiment, Incumbent]:
        kept = self.ledger.kept()
        inc = kept[-1]
        samples = list(inc.evidence.get("samples") or [inc.metric])
        samples += [e.metric for e in self.ledger.experiments
                    if e.status == "remeasure" and e.commit == inc.commit and e.id > inc.id
                    and e.metric is not None]
        return inc, Incumbent(tuple(samples), inc.metrics, kept[0].metrics)

    # -- baseline -----------------------------------------------------------------
    def _baseline(self) -> bool:
        exp_id = self.ledger.next_id()
        parent = self._tip
        tree = self.ws.snapshot()
        started = time.time()
        self._write_pending(id=exp_id, parent=parent, tree=tree, description="baseline",
                            started=started)
        samples: list[float] = []
        m = None
        for k in range(max(1, self.policy.baseline_runs())):
            m = self._measure(exp_id, k, "baseline" if k == 0 else f"baseline (repeat {k})")
            if m.status != "ok" or m.metric is None:
                break
            samples.append(m.metric)
        assert m is not None
        ok = m.status == "ok" and bool(samples)
        status = "keep" if ok else m.status
        value = sum(samples) / len(samples) if ok else None
        reason = "baseline" if ok else m.reason
        exp = Experiment(id=exp_id, status=status, description="baseline", metric=value,
                         metrics=m.metrics, holdout=self._holdout(exp_id) if ok else None,
                         reason=reason, parent=parent, memory_gb=m.memory_gb, started=started,
                         run_seconds=m.seconds, exit_code=m.exit_code, proposer="baseline",
                         evidence={**m.notes, "samples": samples,
                                   "time_budget": self.task.time_budget}, diff={"tree": tree},
                         log=m.log)
        self._finish(exp, tree)
        if ok:
            self._limits_from(exp)
            self.display.message(
                f"budget: a run may take {self._guards.allowance:.1f}s over its "
                f"{self.task.time_budget:g}s budget, so a clock slowed by more than "
                f"{smallest_caught_fake(self.task, self._guards.allowance or 0):.2f}x is "
                "caught" + (f"; scoring may take {self._guards.eval_limit:.0f}s"
                            if self._guards.eval_limit else ""))
        if not ok:
            self.display.message(f"The unmodified baseline did not produce {self.task.metric.name}"
                                 f": {reason.splitlines()[0]}. Fix the task (see {m.log}) and "
                                 "run again; nothing can be compared without a baseline.")
        return ok

    def _limits_from(self, baseline: Experiment) -> None:
        """Budget allowance and scoring limit, both derived from the baseline's timings."""
        self._guards.allowance = allowance(self.task, baseline)
        self._guards.eval_limit = eval_limit(baseline)

    # -- one experiment -------------------------------------------------------------
    def _context(self, exp_id: int, workdir: Path) -> Context:
        files = {}
        for pattern in self.task.editable:
            for path in sorted(self.ws.worktree.glob(pattern)):
                if path.is_file():
                    rel = path.relative_to(self.ws.worktree).as_posix()
                    files[rel] = path.read_text(encoding="utf-8", errors="replace")
        return Context(
            experiment_id=exp_id, workdir=workdir, repo=self.ws.worktree,
            phases=self._guards.phases,
            program=self.task.program_text(self.ws.worktree), files=files,
            editable=self.task.editable, metric=self.task.metric,
            time_budget=self.task.time_budget,
            # The holdout score is for humans: a proposer that saw it could overfit it too.
            history=tuple(self._public),
            last_failure=self._last_failure, feedback=self._feedback)

    def _scope_problem(self, proposal: Proposal, changed: list[str],
                       workdir: Path) -> str | None:
        if proposal.error:
            return f"proposer failed: {proposal.error}"
        start = self.ledger.kept()[0].commit if self.ledger.kept() else self._tip
        for path in changed:  # sizes in the baseline never change: one git call per path
            if path not in self._start_sizes:
                self._start_sizes[path] = self.ws.blob_size(start, path)
        return scope_problem(changed, workdir, self.task.editable, self._protected_hashes,
                             self._start_sizes)

    def _experiment(self) -> None:
        exp_id = self.ledger.next_id()
        parent = self._tip
        started = time.time()
        self._proposer_wire.arm()
        # The proposer edits a plain export: the repository's .git is never in its reach.
        workdir = self.ws.export(self.ws.state / "scratch" / "propose")
        proposal = self.proposer.propose(self._context(exp_id, workdir))
        self._feedback = None
        # Restores our branch, the worktree's HEAD and the ledger. A change to the user's
        # own refs is not held against the proposal: the user may have made it.
        meddled = tampered(self._proposer_wire, self.ledger.intact)
        if meddled:
            self.ws.restore(parent)  # a commit or checkout made in the worktree is undone
        if self._stop_requested:  # Ctrl-C while proposing: nothing ran, nothing to record
            self.ws.restore()
            return
        staged = self.ws.stage(parent, source=workdir)
        desc = " ".join(proposal.description.split()) or "(no description)"
        stat = staged.stat
        base = Experiment(id=exp_id, status="invalid", description=desc, parent=parent,
                          started=started, proposer=self.proposer.name,
                          proposal={"cost_usd": proposal.cost_usd, "tokens": proposal.tokens,
                                    **proposal.meta},
                          diff={"files": stat.files, "insertions": stat.insertions,
                                "deletions": stat.deletions, "tree": staged.tree})
        problem = self._scope_problem(proposal, staged.paths, workdir)
        if meddled:
            problem = f"the proposer changed {meddled}"
        elif staged.special:
            problem = "symlinks and submodules are not allowed: " + ", ".join(staged.special)
        if problem:
            self._feedback = f"Your previous proposal was rejected: {problem}"
            return self._finish(replace(base, reason=problem), staged.tree)
        twin = self._trees.get(staged.tree)
        if twin is not None:
            reason = f"identical to experiment {twin.id} ({twin.status}); not run again"
            self._feedback = f"Your previous proposal was a duplicate: {reason}."
            return self._finish(replace(base, status="duplicate", reason=reason), staged.tree)
        early = self.policy.prescreen(staged.patch)
        if early is not None:  # e.g. a seed-only change: judged from the diff, never run
            return self._finish(replace(base, status=early.status, reason=early.reason,
                                        evidence=early.evidence), staged.tree)
        self._write_pending(id=exp_id, parent=parent, tree=staged.tree, description=desc,
                            started=started)
        self._run_candidate(base, staged.tree, staged.patch)

    def _run_candidate(self, base: Experiment, tree: str, diff: str) -> None:
        m = self._measure(base.id, 0, base.description)
        samples = [m.metric] if m.metric is not None else []
        verdict = Verdict(m.status, m.reason)
        if m.status == "ok":
            _, incumbent = self._incumbent()
            # Scope is enforced, so the whole diff is a diff of the editable files.
            cand = Candidate(tuple(samples), m.metrics, lines_delta(diff), diff)
            verdict = self.policy.judge(cand, incumbent)
            while verdict.status == "rerun" and len(samples) < self.policy.max_samples():
                m2 = self._measure(base.id, len(samples), f"{base.description} (confirm)")
                if m2.status != "ok" or m2.metric is None:
                    verdict, m = Verdict(m2.status, f"repeat {len(samples)}: {m2.reason}"), m2
                    break
                samples.append(m2.metric)
                cand = replace(cand, samples=tuple(samples), metrics=m2.metrics)
                verdict = self.policy.judge(cand, incumbent)
            if verdict.status == "rerun":
                verdict = replace(verdict, status="discard",
                                  reason=f"not confirmed in {len(samples)} runs; {verdict.reason}")
            if verdict.status == "keep":
                env = run_env(self.task, self.ws.tag, base.id, self.options.seed)
                verdict = run_checks(self.task, self._guards, self.logs, base.id, env, verdict,
                                     lambda: self._stop_requested)
        if verdict.status in ("crash", "timeout"):
            self._last_failure = log_tail(Path(m.log))
        value = sum(samples) / len(samples) if samples and m.status == "ok" else None
        holdout = self._holdout(base.id) if verdict.status == "keep" else None
        exp = replace(base, status=verdict.status, reason=verdict.reason, metric=value,
                      metrics=m.metrics, holdout=holdout, memory_gb=m.memory_gb,
                      run_seconds=m.seconds, exit_code=m.exit_code, log=m.log,
                      evidence={**verdict.evidence, **m.notes, "samples": samples})
        self._finish(exp, tree)
        if exp.status != "keep" and not self._stop_requested:
            self._maybe_remeasure()

    def _holdout(self, exp_id: int) -> float | None:
        if not self.task.holdout:
            return None
        env = run_env(self.task, self.ws.tag, exp_id, self.options.seed)
        return score_holdout(self.task, self.logs / f"{exp_id:04d}.holdout.log", env,
                             self._guards)

    def _maybe_remeasure(self) -> None:
        since = 0  # experiments judged on a metric since the last keep
        for e in reversed(self.ledger.experiments):
            if e.status == "keep":
                break
            since += e.proposer != "harness" and bool(e.evidence.get("samples"))
        kept = self.ledger.kept()
        if not self.policy.remeasure_incumbent(since) or not kept:
            return
        inc = kept[-1]
        exp_id = self.ledger.next_id()
        self._write_pending(id=exp_id, parent=inc.commit, started=time.time())
        n = len(self._incumbent()[1].samples)
        m = self._measure(exp_id, n, "re-measure the incumbent")
        exp = Experiment(id=exp_id, status="remeasure" if m.status == "ok" else m.status,
                         description=f"re-measure of experiment {inc.id}", metric=m.metric,
                         metrics=m.metrics, reason=m.reason, commit=inc.commit,
                         parent=inc.commit, memory_gb=m.memory_gb, started=time.time(),
                         run_seconds=m.seconds, exit_code=m.exit_code, proposer="harness",
                         log=m.log)
        self.ledger.append(exp)
        self._public.append(exp)  # a re-measure has no holdout score to hide
        self.ws.restore()
        self._pending_path.unlink()
        self.display.finish(exp)

    # -- finishing ------------------------------------------------------------------
    def _remember_tree(self, exp: Experiment) -> None:
        """Only measured states count as duplicates: a crash or an interrupted run may be
        retried, and a proposal that failed for other reasons was never measured."""
        if exp.diff.get("tree") and exp.status in ("keep", "discard", "checks_failed"):
            self._trees.setdefault(exp.diff["tree"], exp)

    def _finish(self, exp: Experiment, tree: str) -> None:
        """Commit, record, then move refs: the order that makes a crash recoverable."""
        commit = self.ws.commit_experiment(tree, exp, self.task.metric.name)
        exp = replace(exp, commit=commit, finished=time.time())
        self.ledger.append(exp)
        self._public.append(replace(exp, holdout=None))
        self._remember_tree(exp)
        if exp.status == "keep":
            self.ws.advance(commit)
            self._tip = commit
        else:
            self.ws.preserve(commit, exp.id)
            self.ws.restore(exp.parent, clean=False)
        self._pending_path.unlink(missing_ok=True)
        self.proposer.observe(exp)
        self.display.finish(exp)
