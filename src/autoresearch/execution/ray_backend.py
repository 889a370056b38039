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
autoresearch.toml) installed; the task's own code is what is shipped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.executor import Executor, Slot
from autoresearch.execution.jobs import Done, Job, JobEnv, run_job
from autoresearch.execution.measure import Guards, Measurement
from autoresearch.execution.phase import PhaseRunner
from autoresearch.execution.sandbox import Sandbox
from autoresearch.integrity.tripwire import Canaries, Tripwire, expand, network_prefix
from autoresearch.task import ConfigError, TaskSpec
from autoresearch.workspace import unpack

EXTRA_HINT = "install the extra on the driver and every node: pip install 'autoresearch[ray]'"
FORCE_AFTER = 15.0  # seconds between a polite cancel and killing the Ray worker
LOG_LIMIT = 64 * 2**20  # bytes of one log file shipped back (its tail: the summary block)
TOKEN = "ray-holdout:"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--backend ray needs Ray, which is not installed; {EXTRA_HINT}") \
            from exc
    return ray


@dataclass(frozen=True)
class Limits:
    """What the node's guards take from the driver's (picklable; no callables)."""

    allowance: float | None = None
    eval_limit: float | None = None
    forbidden: tuple[Path, ...] = ()  # never mounted into a phase (the driver's .git)


@dataclass(frozen=True)
class Started:
    node: str
    at: float


@dataclass(frozen=True)
class Finished:
    result: Any
    node: str
    started: float
    finished: float
    logs: dict[str, bytes]
    holdout: float | None = None
    holdout_ran: bool = False


def node_guards(task: TaskSpec, scratch: Path, export: Any, limits: Limits = Limits()
                ) -> Guards:
    """Guards for a job on a node: the sandbox is the boundary there.

    No tripwire or canaries: the node holds no ledger or branch to protect, and in
    parallel mode atime canaries cannot tell one worker's read from another's. Data the
    task names must exist on the node (ConfigError naming the path and node otherwise).
    """
    readonly = [expand(p) for p in task.readonly]
    eval_only = [expand(p) for p in task.eval_only]
    missing = [str(p) for p in readonly + eval_only if not p.exists()]
    if missing:
        raise ConfigError(f"eval_only/readonly: {', '.join(missing)} does not exist on node "
                          f"{socket.gethostname()}. Prepare the data on every node.")
    sandbox = Sandbox(task.sandbox, [expand(p) for p in task.sandbox_expose],
                      forbidden=limits.forbidden)
    prefix = network_prefix() if not task.network and not sandbox.active else None
    if prefix is None and task.network is False and not sandbox.active:
        raise ConfigError(f"network = false: node {socket.gethostname()} can cut the network "
                          "neither with bubblewrap nor with `unshare --net`.")
    return Guards(Tripwire([]), Canaries([]), scratch, export, lambda: True,
                  PhaseRunner(sandbox, task.phase_disk_mb, prefix), tuple(readonly),
                  tuple(eval_only), task.editable, bool(task.network), limits.allowance,
                  limits.eval_limit)


def _node_name() -> str:
    import ray
    ctx = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"


def _read_log(path: Path) -> bytes:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= LOG_LIMIT:
            return fh.read()
        fh.seek(size - LOG_LIMIT)
        return f"[autoresearch: the first {size - LOG_LIMIT} bytes were left on the node]\n" \
            .encode() + fh.read()


class StopFlag:
    """Ray actor: raised by the driver's abort(), read by every running task."""

    def __init__(self) -> None:
        self.raised = False

    def set(self) -> None:
        self.raised = True

    def get(self) -> bool:
        return self.raised


def _watch(flag: Any, stop: threading.Event, over: threading.Event) -> None:
    """Node side: copy the driver's stop flag into `stop` (a thread that only waits)."""
    import ray
    while not over.wait(1.0):
        try:
            if ray.get(flag.get.remote(), timeout=10):
                stop.set()
                return
        except Exception:  # noqa: BLE001 - flag unreachable: the driver cancels instead
            continue


def _job_dir() -> tuple[Path, int]:
    """A private folder for one job on this node, and the fd of the lock that marks it live.

    A worker killed mid-job (its node's memory monitor, a force-cancel) leaves its folder
    behind; the next job here removes every folder whose lock nobody holds any more
    (flocks die with their process). A folder is locked before it gets its visible name."""
    base = Path(tempfile.gettempdir()) / "autoresearch-ray"
    base.mkdir(exist_ok=True)
    for old in base.iterdir():
        if old.name.startswith("."):
            continue
        try:
            fd = os.open(old / ".lock", os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(old, ignore_errors=True)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    new = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
    fd = os.open(new / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    live = new.with_name(new.name.removeprefix(".new-"))
    new.rename(live)
    return live, fd


def node_job(job: Job, env: JobEnv, tree_tar: bytes, limits: Limits, flag: Any) -> Any:
    """The Ray task body (a generator): yields `Started`, then `Finished`."""
    node = _node_name()
    started = time.time()
    yield Started(node, started)
    stop, over = threading.Event(), threading.Event()
    threading.Thread(target=_watch, args=(flag, stop, over), daemon=True).start()
    root, lock = _job_dir()
    try:
        logs = root / "logs"

        def export(dest: Path) -> Path:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            unpack(tree_tar, dest)
            return dest

        holdout: float | None = None
        ran = False
        try:
            guards = node_guards(env.task, root / "slot", export, limits)
            guards.phases = guards.phases.for_slot((), stop)
            node_env = replace(env, logs=logs, slot_env={**env.slot_env,
                                                         "AUTORESEARCH_NODE": node})
            result, kept = run_job(job, node_env, guards, export)
            if kept:
                ran = True
                holdout, _ = run_job(replace(job, kind="holdout", handover=kept,
                                             keep_handover=False), node_env, guards, export)
        except ConfigError as exc:
            result = _failed(job, "crash", f"on node {node}: {exc}")
        except KeyboardInterrupt:  # abort(): the phase's process group is already killed
            result = _failed(job, "interrupted", "interrupted by the user")
        finally:
            over.set()
        files = sorted(logs.iterdir()) if logs.is_dir() else []
        shipped = {p.name: _read_log(p) for p in files if p.is_file()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        os.close(lock)
    yield Finished(result, node, started, time.time(), shipped, holdout, ran)


def _failed(job: Job, status: str, reason: str) -> Any:
    """A job that produced no result, as the value its kind answers with."""
    if job.kind == "measure":
        return Measurement(status, reason)
    if job.kind == "checks":
        assert job.verdict is not None
        return Verdict(status, reason, job.verdict.evidence)
    return None  # holdout: no score


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
    returns the tree's tar bytes (`Workspace.archive`).
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
        env = replace(self._env, slot_env={**self._env.slot_env,
                                           "AUTORESEARCH_WORKER": slot.name})
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
        return Done(run.job, _failed(run.job, status, reason), name, run.node,
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
