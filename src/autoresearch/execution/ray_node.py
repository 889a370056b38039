"""The node side of the Ray backend: what one Ray task does with one job.

`node_job` is the task body. It unpacks the shipped tree for each phase into a job
folder of its own, builds the node's guards (`node_guards`), runs the job through
`run_job` (the same function the local slots call) and yields the result with the
log files' bytes. Nothing here imports Ray at module level: the driver imports this
module without the extra, and a node only imports Ray inside a task.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.jobs import Job, JobEnv, run_job
from autoresearch.execution.measure import Guards, Measurement
from autoresearch.execution.phase import PhaseRunner
from autoresearch.execution.sandbox import Sandbox
from autoresearch.integrity.tripwire import Canaries, Tripwire, expand, network_prefix
from autoresearch.task import ConfigError, TaskSpec
from autoresearch.workspace import unpack

LOG_LIMIT = 64 * 2**20  # bytes of one log file shipped back (its tail: the summary block)


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
            result = failed(job, "crash", f"on node {node}: {exc}")
        except KeyboardInterrupt:  # abort(): the phase's process group is already killed
            result = failed(job, "interrupted", "interrupted by the user")
        finally:
            over.set()
        files = sorted(logs.iterdir()) if logs.is_dir() else []
        shipped = {p.name: _read_log(p) for p in files if p.is_file()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        os.close(lock)
    yield Finished(result, node, started, time.time(), shipped, holdout, ran)


def failed(job: Job, status: str, reason: str) -> Any:
    """A job that produced no result, as the value its kind answers with."""
    if job.kind == "measure":
        return Measurement(status, reason)
    if job.kind == "checks":
        assert job.verdict is not None
        return Verdict(status, reason, job.verdict.evidence)
    return None  # holdout: no score
