"""One guarded-phase runner for everything the harness starts on a proposer's behalf.

Proposer commands and agents, the run, the evaluate phase (scorer and model
servers), the holdout and the checks all go through `PhaseRunner`: the
sandbox boundary (`execution.sandbox`), the network rule, a disk quota on what
the phase may write, and the wall-clock limit with the whole process tree
killed at the deadline (`autoresearch.execution.process.run_command`). Memory and time
are measured here, from outside the phase: nothing a phase prints about its
own resources is used for a decision.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.execution.process import GRACE_SECONDS, RunResult, run_command
from autoresearch.execution.sandbox import Access, Sandbox


@dataclass(frozen=True)
class Phase:
    """One command to run under the boundary."""

    name: str  # "propose", "run", "evaluate", "model", "holdout", "check"
    command: str | Sequence[str]  # a shell string, or an argv
    cwd: Path  # the phase's own export: its one writable tree
    log: Path
    timeout: float
    env: dict[str, str]
    access: Access = field(default_factory=Access)
    merge_stderr: bool = True
    pass_fds: tuple[int, ...] = ()
    stdin: Path | None = None  # a file fed on standard input
    grace: float = GRACE_SECONDS  # between SIGTERM and SIGKILL at the deadline
    # Called with the elapsed seconds on every poll; a reason it returns kills the phase.
    poll: Callable[[float], str | None] | None = None


def _usage(paths: Sequence[Path]) -> int:
    """Bytes in files under `paths` (symlinks not followed)."""
    total = 0
    stack = [str(p) for p in paths]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class PhaseRunner:
    """Runs phases inside the sandbox, or as plain process groups where there is none."""

    def __init__(self, sandbox: Sandbox | None = None, disk_mb: int = 4096,
                 net_prefix: str | None = None, cpus: Sequence[int] = (),
                 stop: threading.Event | None = None):
        self.sandbox = sandbox or Sandbox("none")
        self.disk_mb = disk_mb
        # Without the sandbox, `unshare --net` is the one isolation left for network = false.
        self.net_prefix = net_prefix
        self.cpus = tuple(cpus)  # a worker slot's cores: parallel runs must not share them
        self.stop = stop  # set: every phase this runner started ends now, as interrupted

    def for_slot(self, cpus: Sequence[int] = (), stop: threading.Event | None = None
                 ) -> PhaseRunner:
        """The same boundary, pinned to `cpus` and cancelled by `stop`."""
        return PhaseRunner(self.sandbox, self.disk_mb, self.net_prefix, cpus, stop)

    def command(self, phase: Phase) -> str | list[str]:
        """The command line that actually runs (sandbox and network wrappers applied)."""
        cmd = phase.command
        if not self.sandbox.active and not phase.access.network and self.net_prefix:
            cmd = (f"{self.net_prefix} /bin/sh -c {shlex.quote(cmd)}" if isinstance(cmd, str)
                   else [*self.net_prefix.split(), *cmd])
        wrapped = self.sandbox.wrap(cmd, phase.cwd, phase.access)
        if self.cpus and shutil.which("taskset"):  # outside the sandbox: it inherits the mask
            pin = ["taskset", "-c", ",".join(map(str, self.cpus))]
            wrapped = ([*pin, "/bin/sh", "-c", wrapped] if isinstance(wrapped, str)
                       else [*pin, *wrapped])
        return wrapped

    def _quota(self, phase: Phase) -> Callable[[], str | None]:
        roots = [phase.cwd, *phase.access.writable]
        limit = self.disk_mb * 2**20
        before = _usage(roots)

        def check() -> str | None:
            grown = _usage(roots) - before
            if grown > limit:
                return (f"the {phase.name} phase wrote {grown / 2**20:.0f} MB, over its "
                        f"{self.disk_mb} MB quota (phase_disk_mb)")
            return None
        return check

    def run(self, phase: Phase, on_start: Callable[[int], None] | None = None,
            on_tick: Callable[[float], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RunResult:
        """Run `phase` to completion or its deadline; the outcome is a value."""
        if self.stop is not None:
            event, asked = self.stop, should_stop
            should_stop = lambda: event.is_set() or bool(asked and asked())  # noqa: E731
        return run_command(self.command(phase), phase.cwd, phase.log, phase.timeout,
                           self.sandbox.env(dict(phase.env)), on_start, on_tick, should_stop,
                           merge_stderr=phase.merge_stderr, stdin=phase.stdin,
                           grace=phase.grace, pass_fds=phase.pass_fds,
                           watch=self._quota(phase), poll=phase.poll)

    def popen(self, phase: Phase) -> subprocess.Popen[bytes]:
        """Start `phase` in the background (a model server beside its scorer).

        Its own process group; the caller kills it with `runner.kill_group`. Output goes
        to `phase.log`; no deadline is enforced here (the caller owns the clock).
        """
        phase.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(phase)
        with open(phase.log, "wb") as log, open(os.devnull, "rb") as inp:
            return subprocess.Popen(cmd, shell=isinstance(cmd, str), cwd=phase.cwd,
                                    env=self.sandbox.env(dict(phase.env)), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=inp,
                                    start_new_session=True, pass_fds=phase.pass_fds)

