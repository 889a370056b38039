"""Where experiments run: worker slots on this machine (or Ray nodes, `execution.ray`).

Call order (the loop's decision point owns it, from one thread):

1. ``free()``: how many jobs can start now.
2. ``submit(job)`` at most that many times; each job runs on its own slot.
3. ``poll(timeout)``: the jobs that finished since, as `Done` values (a failure is a
   value inside, never an exception).
4. ``abort()`` on a second Ctrl-C: every running phase is stopped at once and comes
   back through ``poll`` as interrupted.
5. ``close()`` when no job is running.

A slot is a name, an environment (``CUDA_VISIBLE_DEVICES``, thread counts), the
cores it is pinned to, and a scratch folder of its own. Threads here only wait on
subprocesses; every deadline is enforced by the process runner, never by a thread.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoresearch.execution.jobs import Done, Job, JobEnv, run_job
from autoresearch.execution.measure import Guards


@dataclass(frozen=True)
class Slot:
    name: str  # "w0", "w1", ...
    env: dict[str, str] = field(default_factory=dict)
    cpus: tuple[int, ...] = ()


def detect_gpus() -> list[str]:
    """Indices of the NVIDIA GPUs here (nvidia-smi), honouring CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")]


def make_slots(workers: int, devices: Sequence[str] | None = None,
               cores: Sequence[int] | None = None) -> list[Slot]:
    """One slot per worker. GPUs go round-robin from `devices` (default: detected); the
    cores are split evenly, each slot pinned to its share with matching thread counts.
    One worker gets no pinning at all: the run keeps the whole machine, as before."""
    gpus = list(devices) if devices is not None else detect_gpus()
    cpu_list = sorted(cores if cores is not None else os.sched_getaffinity(0))
    slots = []
    for i in range(workers):
        env: dict[str, str] = {}
        cpus: tuple[int, ...] = ()
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        if workers > 1:
            share = max(1, len(cpu_list) // workers)
            start = (i * share) % len(cpu_list)
            cpus = tuple(cpu_list[start:start + share])
            threads = str(len(cpus))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                       OPENBLAS_NUM_THREADS=threads, AUTORESEARCH_WORKER=f"w{i}")
        slots.append(Slot(f"w{i}", env, cpus))
    return slots


class Executor(ABC):
    """Runs jobs on slots; see the module docstring for the call order."""

    slots: list[Slot]

    @abstractmethod
    def free(self) -> int: ...

    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[Done]: ...

    @abstractmethod
    def running(self) -> dict[str, Job]:
        """Slot name -> the job it runs now."""

    @abstractmethod
    def abort(self) -> None: ...

    @abstractmethod
    def set_limits(self, allowance: float | None, eval_limit: float | None) -> None:
        """The baseline-derived budget allowance and scoring limit, for every later job."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds (a Ray connection)."""


class LocalExecutor(Executor):
    """N slots on this machine; each job exports its tree into the slot's own scratch."""

    def __init__(self, slots: list[Slot], env: JobEnv, guards: Guards, scratch: Path,
                 export: Callable[[str, Path], Path],
                 on_start: Callable[[Job, int], None] | None = None,
                 on_tick: Callable[[Job, float], None] | None = None):
        self.slots = slots
        self._env, self._export = env, export
        self._on_start, self._on_tick = on_start, on_tick
        self._stop = threading.Event()
        # One slot keeps the scratch layout of a sequential loop (scratch/run, ...);
        # several get a folder each.
        self._guards = {s.name: replace(guards, scratch=scratch / s.name if len(slots) > 1
                                        else scratch,
                                        phases=guards.phases.for_slot(s.cpus, self._stop))
                        for s in slots}
        self._busy: dict[str, Job] = {}
        self._done: queue.Queue[Done] = queue.Queue()

    def free(self) -> int:
        return len(self.slots) - len(self._busy)

    def running(self) -> dict[str, Job]:
        return dict(self._busy)

    def submit(self, job: Job) -> None:
        slot = next(s for s in self.slots if s.name not in self._busy)
        self._busy[slot.name] = job
        threading.Thread(target=self._work, args=(slot, job), daemon=True,
                         name=f"autoresearch-{slot.name}").start()

    def _work(self, slot: Slot, job: Job) -> None:
        started = time.time()
        guards = self._guards[slot.name]
        env = replace(self._env, slot_env={**self._env.slot_env, **slot.env})
        started_cb, tick_cb = self._on_start, self._on_tick
        try:
            result, handover = run_job(
                job, env, guards, lambda dest: self._export(job.tree, dest),
                (lambda pgid: started_cb(job, pgid)) if started_cb else None,
                (lambda t: tick_cb(job, t)) if tick_cb else None)
        except Exception as exc:  # a harness bug in one job must not hang the loop
            result, handover = exc, ""
        self._done.put(Done(job, result, slot.name, "", started, time.time(), handover))

    def poll(self, timeout: float) -> list[Done]:
        out: list[Done] = []
        try:
            out.append(self._done.get(timeout=timeout))
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        for done in out:
            self._busy.pop(done.worker, None)
        return out

    def abort(self) -> None:
        self._stop.set()

    def set_limits(self, allowance: float | None, eval_limit: float | None) -> None:
        for guards in self._guards.values():
            guards.allowance, guards.eval_limit = allowance, eval_limit
