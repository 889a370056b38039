"""Run jobs on a Ray cluster: each job is one Ray task, and the tree travels with it.

`RayExecutor` keeps the `Executor` call order (free, submit, poll, abort, close);
the decision point, the ledger and the run branch stay on the driver. Per job:

- The driver ships the commit's tree as tar bytes (`Workspace.archive`); no shared
  filesystem is assumed. The node unpacks it into a temp folder of its own for each
  phase, builds its own guards (`node_guards`: the sandbox and the phase runner the
  task asks for, with the driver's baseline-derived limits) and calls `run_job`, the
  same function the local slots call.
- The task's log files come back as bytes and the driver writes them into the tag's
  logs folder, under the names a local run would have used.
- Holdout: a measure job with ``keep_handover`` scores the holdout inside the same
  task, right after the run, because the handed-over model cannot be fetched later
  without a shared filesystem. Its `Done.handover` is then a token; when the loop
  submits the holdout job for it, the value is answered at once from the driver,
  with no new task. (The cost: one holdout scoring per ok run that asks for it.)
- A node that dies mid-job (`NodeDiedError`, `WorkerCrashedError`, any `RayError`)
  turns the job into a value naming the node: a ``crash`` Measurement, a ``crash``
  checks verdict, or no holdout score. It is not retried: the same seed on another
  node would be a different measurement of record, and the night goes on either way.
- ``abort()`` raises a stop flag (a tiny Ray actor each task checks once a second):
  the node's phase runner stops the phase as it would on a local slot, and the job
  comes back ``interrupted`` with its logs. A task still running `FORCE_AFTER` seconds
  later is cancelled (a KeyboardInterrupt in it, which the process runner turns into
  killing the phase's group), then, after as long again, killed with its Ray worker;
  those come back ``interrupted`` without logs.

Every node needs the same autoresearch (and the task's data, at the paths in
autoresearch.toml) installed; the task's own code is what is shipped. Jobs work in
`$TMPDIR/autoresearch-ray/` on the node; a folder left by a killed worker is removed
by the next job there. Ray's own memory monitor may kill a worker whose run fills the
node's memory: that comes back as a ``crash`` naming the node (OutOfMemoryError).
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.execution.executor import Executor, Slot
from autoresearch.execution.jobs import Done, Job, JobEnv
from autoresearch.execution.measure import Guards, Measurement
from autoresearch.execution.ray_node import (
    Finished,
    Limits,
    Started,
    StopFlag,
    failed,
    node_guards,
    node_job,
)
from autoresearch.task import ConfigError

__all__ = ["RayExecutor", "import_ray", "node_guards"]

EXTRA_HINT = "install the extra on the driver and every node: pip install 'autoresearch[ray]'"
FORCE_AFTER = 15.0  # seconds between a polite cancel and killing the Ray worker
TOKEN = "ray-holdout:"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--backend ray needs Ray, which is not installed; {EXTRA_HINT}") \
            from exc
    return ray


def _node_from_error(text: str) -> str:
    ip = re.search(r"Node IP: ([^\s,]+)", text)
    nid = re.search(r"node ID: ([0-9a-f]+)", text)
    return f"{ip.group(1) if ip else '?'}/{nid.group(1)[:8]}" if nid else ""


@dataclass
class _Running:
    job: Job
    gen: Any  # ray.ObjectRefGenerator
    submitted: float
    node: str = ""
    started: float = 0.0
    cancelled: float = 0.0  # when abort() asked it to stop
    escalated: int = 0  # 1: cancelled (KeyboardInterrupt), 2: its worker killed


class RayExecutor(Executor):
    """`workers` slots on a Ray cluster; each job asks Ray for `num_cpus`/`num_gpus` (and
    any custom `resources`), so Ray picks the node and sets CUDA_VISIBLE_DEVICES there.

    `guards` are the driver's: their baseline-derived limits (allowance, eval_limit) are
    read at each submit, so the loop may set them after construction. `archive(tree)`
    returns the tree's tar bytes (`Workspace.archive`). `address`: the cluster's (None:
    $RAY_ADDRESS, else a Ray started on this machine); a Ray connection the caller
    already made is used as is and left open.
    """

    def __init__(self, workers: int, env: JobEnv, guards: Guards, archive: Any, *,
                 address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 resources: dict[str, float] | None = None):
        self._ray = ray = import_ray()
        self.slots = [Slot(f"w{i}") for i in range(workers)]
        self._env, self._guards, self._archive = env, guards, archive
        self._options = dict(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or {},
                             max_retries=0, num_returns="streaming")
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     configure_logging=False)
        self._remote = ray.remote(node_job)
        self._flag = ray.remote(num_cpus=0)(StopFlag).remote()
        self._trees: OrderedDict[str, Any] = OrderedDict()  # tree -> ObjectRef of its tar
        self._busy: dict[str, _Running] = {}
        self._ready: list[Done] = []  # answered without a task (holdouts already scored)
        self._holdouts: dict[str, tuple[float | None, str]] = {}

    def free(self) -> int:
        return len(self.slots) - len(self._busy) - len(self._ready)

    def running(self) -> dict[str, Job]:
        return {name: r.job for name, r in self._busy.items()}

    def nodes(self) -> dict[str, str]:
        """Slot name -> the node its job runs on (empty until the task has started)."""
        return {name: r.node for name, r in self._busy.items()}

    def _tar(self, tree: str) -> Any:
        if tree not in self._trees:
            self._trees[tree] = self._ray.put(self._archive(tree))
            while len(self._trees) > 8:  # repeats of recent trees reuse the shipped copy
                self._trees.popitem(last=False)
        self._trees.move_to_end(tree)
        return self._trees[tree]

    def submit(self, job: Job) -> None:
        busy = {*self._busy, *(d.worker for d in self._ready)}
        slot = next(s for s in self.slots if s.name not in busy)
        now = time.time()
        if job.kind == "holdout" and job.handover.startswith(TOKEN):
            value, node = self._holdouts.pop(job.handover, (None, ""))
            self._ready.append(Done(job, value, slot.name, node, now, now))
            return
        g = self._guards
        limits = Limits(g.allowance, g.eval_limit, g.phases.sandbox.forbidden)
        # Ray chose the node's GPUs (CUDA_VISIBLE_DEVICES there); the driver's never apply.
        slot_env = {k: v for k, v in self._env.slot_env.items() if k != "CUDA_VISIBLE_DEVICES"}
        env = replace(self._env, slot_env={**slot_env, "AUTORESEARCH_WORKER": slot.name})
        gen = self._remote.options(**self._options).remote(job, env, self._tar(job.tree),
                                                           limits, self._flag)
        self._busy[slot.name] = _Running(job, gen, now)

    def poll(self, timeout: float) -> list[Done]:
        out, self._ready = self._ready, []
        deadline = time.monotonic() + timeout
        while True:
            self._force_stragglers()
            gens = {id(r.gen): name for name, r in self._busy.items()}
            if not gens:
                break
            refs = [self._busy[n].gen for n in gens.values()]
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=min(wait, 1.0))
            if ready:  # then every other one that is ready too
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            for gen in ready:
                name = gens[id(gen)]
                done = self._step(name, self._busy[name])
                if done is not None:
                    del self._busy[name]
                    out.append(done)
            if out or time.monotonic() >= deadline:
                break
        return out

    def _step(self, name: str, run: _Running) -> Done | None:
        """Take the next item of a ready task: its start, its end, or its failure."""
        ray = self._ray
        try:
            item = ray.get(next(run.gen))
        except StopIteration:
            item = RuntimeError("the Ray task ended without a result")
        except ray.exceptions.TaskCancelledError:
            return self._lost(name, run, "interrupted", "interrupted by the user")
        except ray.exceptions.RayTaskError as exc:  # the harness failed there (disk full...)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return self._lost(name, run, "crash", f"harness error on node {run.node or '?'}: "
                              f"{type(cause).__name__}: {cause}")
        except ray.exceptions.RayError as exc:  # the node, its raylet or the worker died
            text = str(exc)
            run.node = run.node or _node_from_error(text)
            first = text.strip().split(". ")[0] if text.strip() else type(exc).__name__
            return self._lost(name, run, "crash", f"node {run.node or '?'} failed mid-"
                              f"experiment ({type(exc).__name__}): {first}")
        if isinstance(item, Started):
            run.node, run.started = item.node, item.at
            return None
        if not isinstance(item, Finished):
            return self._lost(name, run, "crash", f"harness error on node {run.node}: {item}")
        return self._finish(name, run, item)

    def _lost(self, name: str, run: _Running, status: str, reason: str) -> Done:
        if status == "interrupted" or run.cancelled:
            status, reason = "interrupted", "interrupted by the user (its logs were lost " \
                "with the cancelled Ray task)"
        return Done(run.job, failed(run.job, status, reason), name, run.node,
                    run.started or run.submitted, time.time())

    def _finish(self, name: str, run: _Running, item: Finished) -> Done:
        logs = self._env.logs
        logs.mkdir(parents=True, exist_ok=True)
        for fname, data in item.logs.items():
            (logs / Path(fname).name).write_bytes(data)
        result, handover = item.result, ""
        if isinstance(result, Measurement) and result.log:
            result = replace(result, log=str(logs / Path(result.log).name))
        if item.holdout_ran:
            handover = f"{TOKEN}{run.job.exp_id}-{run.job.sample}"
            self._holdouts[handover] = (item.holdout, item.node)
        return Done(run.job, result, name, item.node, item.started, item.finished, handover)

    def _force_stragglers(self) -> None:
        now = time.time()
        for run in self._busy.values():
            if run.cancelled and run.escalated < 2 and \
                    now - run.cancelled > FORCE_AFTER * (run.escalated + 1):
                self._ray.cancel(run.gen, force=run.escalated == 1)
                run.escalated += 1

    def set_limits(self, allowance: float | None, eval_limit: float | None) -> None:
        """Nothing to copy: every submit reads the driver's guards, which hold them."""
        self._guards.allowance, self._guards.eval_limit = allowance, eval_limit

    def abort(self) -> None:
        now = time.time()
        self._flag.set.remote()
        for run in self._busy.values():
            run.cancelled = run.cancelled or now

    def close(self) -> None:
        self._trees.clear()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        elif self._ray.is_initialized():
            self._ray.kill(self._flag)
