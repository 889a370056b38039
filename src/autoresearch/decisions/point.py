"""The decision point: the one serialized place that owns the ledger, the run branch
and the policy.

Everything reaches it on the loop's thread, in order:

- `admit(ticket)`: a finished proposal is staged, checked for scope, duplicates
  (measured trees and those in flight) and the policy's prescreen. A rejection
  is a ledger row at once; an admitted candidate gets a keep protocol
  (`decisions.protocol`) and its first job.
- `on_done(done)`: a job's result goes into its candidate's protocol, which asks
  for the next job or ends with an outcome.
- An outcome is concluded: a keep measured on the current incumbent advances the
  branch; one measured on an older incumbent follows the stale rule (default:
  its change is merged onto the tip and the merged tree, unmeasured, is run
  again; on a conflict it is recorded `stale`). So every kept commit's exact tree
  was measured against the incumbent current when it was kept.

Each experiment finishes in the order commit object -> ledger row (fsync) ->
refs -> its in-flight file removed, so `autoresearch.resume` can repair a
harness killed at any point, with any number of experiments in flight.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.decisions.policy import Incumbent, Policy, Verdict
from autoresearch.decisions.protocol import Checks, Outcome, Protocol, Run, Sample, keep_protocol
from autoresearch.decisions.simplicity import lines_delta
from autoresearch.execution.jobs import Done, Job
from autoresearch.execution.measure import Measurement
from autoresearch.integrity.scope import scope_problem
from autoresearch.ledger import Experiment, Ledger
from autoresearch.proposers.pool import Ticket
from autoresearch.task import TaskSpec
from autoresearch.workspace import Workspace

MEASURED = ("keep", "discard", "checks_failed", "pruned")


@dataclass
class Candidate:
    """An experiment between admission and its ledger row."""

    base: Experiment  # the row so far: id, description, parent, proposal, diff
    tree: str
    protocol: Protocol | None = None
    last: Measurement | None = None
    handover: str = ""  # where the model of its latest ok run was kept (holdout)
    outcome: Outcome | None = None  # set once the protocol ended
    remeasure: bool = False  # a harness run of the incumbent, not a proposal
    incumbent_tree: str = ""  # the parent's tree: what the incumbent half of a pair runs


class DecisionPoint:
    def __init__(self, task: TaskSpec, ws: Workspace, ledger: Ledger, policy: Policy,
                 seed: int, protected: dict[str, str], say: Callable[[str], None],
                 finished: Callable[[Experiment], None], stale_rule: str = "rerun"):
        self.task, self.ws, self.ledger, self.policy = task, ws, ledger, policy
        self.seed, self._protected, self._say = seed, protected, say
        self._finished = finished  # display, proposer pool, trackers
        self.stale_rule = stale_rule
        self.inflight_dir = ws.state / "inflight"
        self.tip = ws.branch_tip()
        self.active: dict[int, Candidate] = {}
        self.queue: deque[Job] = deque()  # jobs waiting for a free slot, oldest first
        self._keeping: int | None = None  # a keep waiting for its holdout blocks other keeps
        self._deferred: list[Candidate] = []
        self.concluded: list[Candidate] = []  # protocols that ended, not yet recorded
        self._trees: dict[str, Experiment] = {}  # measured tree -> first experiment with it
        self._start_sizes: dict[str, int | None] = {}
        self.feedback: str | None = None
        self.aborting = False
        for e in ledger.experiments:
            self._remember(e)

    # -- the incumbent ----------------------------------------------------------------
    def incumbent_of(self, commit: str) -> Incumbent:
        """The samples of the kept commit `commit`: its own runs plus its re-measures."""
        kept = self.ledger.kept()
        row = next((e for e in reversed(kept) if e.commit == commit), kept[-1])
        samples = list(row.evidence.get("samples") or [row.metric])
        samples += [e.metric for e in self.ledger.experiments
                    if e.status == "remeasure" and e.commit == row.commit and e.id > row.id
                    and e.metric is not None]
        # The incumbent halves of other candidates' pairs are re-measurements of it too.
        samples += [v for e in self.ledger.experiments if e.parent == row.commit
                    and e.id != row.id for v in e.evidence.get("incumbent_runs", [])]
        return Incumbent(tuple(samples), row.metrics, kept[0].metrics)

    # -- admission ----------------------------------------------------------------------
    def admit(self, t: Ticket, proposer: str, meddled: str | None = None) -> None:
        """Stage a proposal; record its rejection or start its protocol."""
        staged = self.ws.stage(t.parent, source=t.workdir)
        desc = " ".join(t.proposal.description.split()) or "(no description)"
        stat = staged.stat
        base = Experiment(id=t.exp_id, status="invalid", description=desc, parent=t.parent,
                          started=t.started, proposer=proposer,
                          proposal={"cost_usd": t.proposal.cost_usd, "tokens": t.proposal.tokens,
                                    "seconds": round(t.seconds, 2), **t.proposal.meta},
                          diff={"files": stat.files, "insertions": stat.insertions,
                                "deletions": stat.deletions, "tree": staged.tree})
        if t.rerun_of is not None:
            base = replace(base, evidence={"rerun_of": t.rerun_of})
        problem = meddled and f"the proposer changed {meddled}"
        problem = problem or (f"proposer failed: {t.proposal.error}" if t.proposal.error
                              else None)
        if not problem and staged.special:
            problem = "symlinks and submodules are not allowed: " + ", ".join(staged.special)
        problem = problem or self._scope(staged.paths, t.workdir)
        if problem:
            self.feedback = f"Your previous proposal was rejected: {problem}"
            return self.finish(replace(base, reason=problem), staged.tree)
        twin = self._trees.get(staged.tree) or next(
            (c.base for c in self.active.values() if c.tree == staged.tree), None)
        if twin is not None:
            reason = f"identical to experiment {twin.id} ({twin.status if twin.id not in self.active else 'running'}); not run again"  # noqa: E501
            self.feedback = f"Your previous proposal was a duplicate: {reason}."
            return self.finish(replace(base, status="duplicate", reason=reason), staged.tree)
        early = self.policy.prescreen(staged.patch)
        if early is not None:  # e.g. a seed-only change: judged from the diff, never run
            return self.finish(replace(base, status=early.status, reason=early.reason,
                                       evidence=early.evidence), staged.tree)
        self._start(Candidate(base, staged.tree), staged.patch)

    def _scope(self, changed: list[str], workdir: Path) -> str | None:
        start = self.ledger.kept()[0].commit if self.ledger.kept() else self.tip
        for path in changed:  # sizes in the baseline never change: one git call per path
            if path not in self._start_sizes:
                self._start_sizes[path] = self.ws.blob_size(start, path)
        return scope_problem(changed, workdir, self.task.editable, self._protected,
                             self._start_sizes)

    def _start(self, cand: Candidate, patch: str) -> None:
        parent = cand.base.parent
        cand.incumbent_tree = self.ws.tree_of(parent)
        cand.protocol = keep_protocol(self.policy, lambda: self.incumbent_of(parent),
                                      lines_delta(patch), patch, bool(self.task.checks))
        self.active[cand.base.id] = cand
        self._write_inflight(cand)
        self._advance(cand, None)

    def hold(self, base: Experiment, tree: str) -> None:
        """Mark an experiment run outside a protocol (the baseline) as in flight."""
        self._write_inflight(Candidate(base, tree))

    def remeasure(self) -> None:
        """Run the incumbent once more (a harness experiment; drift tracking)."""
        inc = self.ledger.kept()[-1]
        exp_id = self.next_id()
        n = len(self.incumbent_of(inc.commit).samples)
        base = Experiment(id=exp_id, status="remeasure", description=f"re-measure of "
                          f"experiment {inc.id}", commit=inc.commit, parent=inc.commit,
                          started=time.time(), proposer="harness")
        cand = Candidate(base, inc.diff.get("tree") or self.ws.tree_of(inc.commit),
                         remeasure=True)
        self.active[exp_id] = cand
        self._write_inflight(cand)
        self.queue.append(Job("measure", exp_id, cand.tree, n, "re-measure the incumbent",
                              self.seed))

    def next_id(self) -> int:
        return max([self.ledger.next_id(), *(i + 1 for i in self.active)])

    # -- results --------------------------------------------------------------------------
    def on_done(self, done: Done) -> None:
        cand = self.active.get(done.job.exp_id)
        if cand is None:
            return
        # Where and when each job ran: the utilization timeline (`ui.occupancy`) reads it.
        jobs = [*cand.base.evidence.get("jobs", []),
                [done.job.kind, done.worker, round(done.started, 3), round(done.finished, 3)]]
        cand.base = replace(cand.base, worker=done.worker, node=done.node,
                            evidence={**cand.base.evidence, "jobs": jobs})
        result = done.result
        if isinstance(result, BaseException):  # a harness bug in the job: a crash row
            result = Measurement("crash", f"harness error in {done.job.kind}: "
                                 f"{type(result).__name__}: {result}")
        if cand.remeasure:
            return self._finish_remeasure(cand, result)
        if done.job.kind == "holdout":
            return self._keep(cand, result if isinstance(result, float) else None)
        if done.job.kind == "measure":
            if result.status == "ok":
                self.observe_curves(done.job.tree, result.log)
            if done.job.tree == cand.tree:  # not the incumbent half of a pair
                cand.last, cand.handover = result, done.handover or cand.handover
            answer: Any = Sample(result.status, result.reason, result.metric, result.metrics)
        else:  # checks
            answer = result if isinstance(result, Verdict) else Verdict("crash", str(result))
            if self.aborting and answer.status != "keep":  # killed by us: not a failure
                answer = Verdict("interrupted", "checks stopped by the user")
        self._advance(cand, answer)

    def _advance(self, cand: Candidate, answer: Any) -> None:
        assert cand.protocol is not None
        try:
            request = cand.protocol.send(answer)
        except StopIteration as stop:
            # Concluded after the loop has started the next jobs (`settle`): committing and
            # moving refs need not keep a free worker waiting.
            cand.outcome = stop.value
            self.concluded.append(cand)
            return
        # A candidate already running goes before new ones: its decision is what the
        # next proposals are waiting to learn from.
        if isinstance(request, Run):
            job = self._run_job(cand, request)
            self.queue.append(job) if job.label == cand.base.description \
                else self.queue.appendleft(job)
        elif isinstance(request, Checks):
            self.queue.appendleft(Job("checks", cand.base.id, cand.tree, 0, "checks",
                                      self.seed, verdict=request.verdict))

    def _run_job(self, cand: Candidate, request: Run) -> Job:
        """The job for a protocol's run request: the candidate's tree or, for the incumbent
        half of a pair, its parent's; the first run is watched for early stopping."""
        exp_id, desc = cand.base.id, cand.base.description
        if request.seed is not None:  # a pair: both halves share one fresh seed
            incumbent = request.subject == "incumbent"
            return Job("measure", exp_id, cand.incumbent_tree if incumbent else cand.tree,
                       request.seed, f"{desc} (pair {request.k + 1}, "
                       f"{'incumbent' if incumbent else 'candidate'})", self.seed,
                       keep_handover=bool(self.task.holdout) and not incumbent,
                       log=f"{exp_id:04d}-pair{request.k + 1}-{request.subject}.log")
        first = request.k == 0
        pruner = self.policy.pruner() if first else None
        return Job("measure", exp_id, cand.tree, request.k,
                   desc if first else f"{desc} (confirm)", self.seed,
                   keep_handover=bool(self.task.holdout),
                   prune=copy.deepcopy(pruner) if pruner is not None else None,
                   prune_ref=cand.incumbent_tree)

    def observe_curves(self, tree: str, log: str) -> None:
        """A full-budget run's progress curves, for pruning later runs against them."""
        pruner = self.policy.pruner()
        if pruner is not None and log and Path(log).is_file():
            pruner.observe_log(tree, Path(log))

    def settle(self) -> None:
        """Conclude what the last results decided: rows, commits and refs, in order."""
        while self.concluded:
            cand = self.concluded.pop(0)
            assert cand.outcome is not None
            self._conclude(cand, cand.outcome)

    def _conclude(self, cand: Candidate, outcome: Outcome) -> None:
        cand.outcome = outcome
        v = outcome.verdict
        if v.status == "keep" and self._keeping is not None:
            self._deferred.append(cand)  # decided after the keep in progress
            return
        if v.status == "keep" and cand.base.parent != self.tip:
            return self._stale(cand)
        if v.status == "keep" and self.task.holdout and cand.handover:
            self._keeping = cand.base.id
            self.queue.appendleft(Job("holdout", cand.base.id, cand.tree, 0, "holdout",
                                      self.seed, handover=cand.handover))
            return
        self._keep(cand, None) if v.status == "keep" else self._record(cand)

    def _stale(self, cand: Candidate) -> None:
        """A keep measured on an incumbent that has moved on since.

        Rule "rerun" (default): the change is merged onto the tip and the merged tree runs
        against the current incumbent. When the merge conflicts (two sweeps of one
        constant), the candidate's own tree runs against it instead: keeping it then means
        its version beats the tip's, measured. Rule "discard": recorded `stale`.
        """
        old = cand.base.parent
        merged = conflict = None
        if self.stale_rule == "rerun":
            merged = self.ws.merge_onto(self.tip, old, cand.tree)
            if merged is None:
                merged, conflict = cand.tree, True
        busy = merged is not None and (merged in self._trees or any(
            c.tree == merged and c is not cand for c in self.active.values()))
        if merged is None or busy:
            why = "the merged tree was already measured" if busy else \
                "decided on an older incumbent (stale = \"discard\")"
            verdict = Verdict("stale", f"measured on {old[:8]}, but {self.tip[:8]} was kept "
                              f"meanwhile; {why}", cand.outcome.verdict.evidence
                              if cand.outcome else {})
            cand.outcome = Outcome(verdict, cand.outcome.samples if cand.outcome else (),
                                   cand.outcome.last if cand.outcome else None)
            return self._record(cand)
        self._say(f"[exp {cand.base.id}] was measured on an older incumbent; " + (
            "its change conflicts with the new one, so its own tree runs again against it"
            if conflict else f"its change, merged onto {self.tip[:8]}, runs again"))
        self._drop_handover(cand)
        rebased = replace(cand.base, parent=self.tip, diff={**cand.base.diff, "tree": merged},
                          evidence={**cand.base.evidence, "rebased_from": old,
                                    "unmerged_tree": cand.tree, "conflict": bool(conflict)})
        self.active.pop(cand.base.id)
        self._start(Candidate(rebased, merged), self.ws.diff_trees(self.tip, merged))

    def _keep(self, cand: Candidate, holdout: float | None) -> None:
        self._keeping = None
        self._record(cand, holdout)
        deferred, self._deferred = self._deferred, []
        for other in deferred:
            if other.outcome is not None:
                self._conclude(other, other.outcome)

    def _record(self, cand: Candidate, holdout: float | None = None) -> None:
        assert cand.outcome is not None
        v, m = cand.outcome.verdict, cand.last
        samples = list(cand.outcome.samples)
        value = sum(samples) / len(samples) if samples and v.status in MEASURED else None
        extra = {"incumbent_runs": list(cand.outcome.incumbent_runs)} \
            if cand.outcome.incumbent_runs else {}
        exp = replace(cand.base, status=v.status, reason=v.reason, metric=value,
                      holdout=holdout, evidence={**cand.base.evidence, **v.evidence,
                                                 **(m.notes if m else {}), **extra,
                                                 "samples": samples})
        if m is not None:
            exp = replace(exp, metrics=m.metrics, memory_gb=m.memory_gb, run_seconds=m.seconds,
                          exit_code=m.exit_code, log=m.log)
        if v.status != "keep":
            self._drop_handover(cand)
        self.active.pop(cand.base.id, None)
        self.finish(exp, cand.tree)

    def _finish_remeasure(self, cand: Candidate, m: Measurement) -> None:
        if m.status == "ok":
            self.observe_curves(cand.tree, m.log)
        exp = replace(cand.base, status="remeasure" if m.status == "ok" else m.status,
                      evidence=cand.base.evidence,
                      metric=m.metric, metrics=m.metrics, reason=m.reason,
                      memory_gb=m.memory_gb, run_seconds=m.seconds, exit_code=m.exit_code,
                      log=m.log, finished=time.time())
        self.active.pop(cand.base.id, None)
        self.ledger.append(exp)
        (self.inflight_dir / f"{exp.id}.json").unlink(missing_ok=True)
        self._finished(exp)

    def _drop_handover(self, cand: Candidate) -> None:
        if cand.handover:
            shutil.rmtree(cand.handover, ignore_errors=True)
            cand.handover = ""

    # -- finishing --------------------------------------------------------------------------
    def _remember(self, exp: Experiment) -> None:
        """Only measured states count as duplicates: a crash or an interrupted run may be
        retried, and a proposal that failed for other reasons was never measured."""
        if exp.diff.get("tree") and exp.status in MEASURED:
            self._trees.setdefault(exp.diff["tree"], exp)

    def finish(self, exp: Experiment, tree: str) -> None:
        """Commit, record, then move refs: the order that makes a crash recoverable."""
        commit = self.ws.commit_experiment(tree, exp, self.task.metric.name)
        exp = replace(exp, commit=commit, finished=time.time())
        self.ledger.append(exp)
        self._remember(exp)
        if exp.status == "keep":
            self.ws.advance(commit)
            self.tip = commit
        else:
            self.ws.preserve(commit, exp.id)
        (self.inflight_dir / f"{exp.id}.json").unlink(missing_ok=True)
        self._finished(exp)

    def _write_inflight(self, cand: Candidate) -> None:
        self.inflight_dir.mkdir(parents=True, exist_ok=True)
        state = {"id": cand.base.id, "parent": cand.base.parent, "description":
                 cand.base.description, "started": cand.base.started, "pgids": [],
                 "proposer": cand.base.proposer}
        if not cand.remeasure:
            state["tree"] = cand.tree
        path = self.inflight_dir / f"{cand.base.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def record_pgid(self, exp_id: int, pgid: int) -> None:
        """Called from a job's thread as a phase starts: a killed harness's successor
        finds the group here and kills it."""
        path = self.inflight_dir / f"{exp_id}.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        state["pgids"] = [*state.get("pgids", []), pgid]
        tmp = path.with_suffix(f".{pgid}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)
