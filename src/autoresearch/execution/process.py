"""Run one command under a hard wall-clock limit, enforced from outside.

The command starts in its own session (so its own process group); stdout and
stderr go to a log file. At the deadline the whole group gets SIGTERM, then
SIGKILL after a grace period, grandchildren included. After the command exits,
any process left in its group, or any descendant we saw that escaped into a
new session, is killed too: an experiment never outlives its row.

The limit is checked by polling in the calling thread, never by a timer thread,
so a hung child cannot keep running behind our back. Peak memory is the
largest summed RSS of the process tree seen while polling (so a very short
spike between two polls can be missed; the sampling period is 0.1-0.5 s).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when killed at the deadline
    timed_out: bool
    seconds: float
    peak_rss_mb: float
    log: Path
    interrupted: bool = False
    leftovers: int = 0  # processes still running after the main one exited (killed)
    violation: str = ""  # why `watch` had the run killed (e.g. over its disk quota)

    @property
    def ok(self) -> bool:
        return (self.exit_code == 0 and not self.timed_out and not self.interrupted
                and not self.violation)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def group_members(pgid: int) -> list[psutil.Process]:
    """Processes in group `pgid`, or in the session it leads (a child that called setpgid)."""
    members = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid or os.getsid(p.pid) == pgid:
                members.append(p)
        except (OSError, psutil.Error):
            continue
    return members


def group_alive(pgid: int) -> bool:
    """True if a live (non-zombie) process is still in process group `pgid`.

    `killpg(pgid, 0)` answers the common case (group gone) cheaply; zombies keep
    it answering yes where PID 1 does not reap (containers), so then we look.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return any(_alive(p) for p in group_members(pgid))


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_group(pgid: int, extra: list[psutil.Process] | None = None,
               grace: float = GRACE_SECONDS,
               reap: Callable[[], object] | None = None) -> None:
    """SIGTERM the process group and `extra` processes, then SIGKILL what is left.

    `reap` is called while waiting so our own child does not linger as a zombie
    (a zombie leader keeps the group "alive" for `killpg(pgid, 0)`).
    """
    extra = extra or []

    def signal_all(sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in extra:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline:
            if reap:
                reap()
            if not group_alive(pgid) and not any(_alive(p) for p in extra):
                return
            time.sleep(0.05)
    except BaseException:  # Ctrl-C during the grace period: no mercy, but no orphans
        signal_all(signal.SIGKILL)
        raise
    signal_all(signal.SIGKILL)
    # SIGKILL is not instant; return only once the tree is really gone (or 2 s passed).
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and (group_alive(pgid) or any(_alive(p) for p in extra)):
        if reap:
            reap()
        time.sleep(0.02)


def sweep_orphans(pgid: int, under: Path) -> bool:
    """Kill group `pgid` left by a harness that died, if it still runs under `under`.

    The cwd check guards against a recycled group id belonging to someone else.
    Returns True when something was killed.
    """
    under = under.resolve()
    members = group_members(pgid)
    ours = False
    for p in members:
        try:
            ours = ours or Path(p.cwd()).resolve().is_relative_to(under)
        except (psutil.Error, OSError):
            continue
    if ours:
        kill_group(pgid, members, grace=2.0)
    return ours


def marked(needle: str) -> list[int]:
    """Pids whose environment contains `needle` (e.g. `AUTORESEARCH_RUN_TOKEN=...`).

    A daemon that called setsid leaves our group and session but keeps the
    environment it inherited. Linux only (/proc); elsewhere this finds nothing.
    """
    raw = needle.encode()
    pids, unread = [], []
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for attempt in range(2):
        for pid in entries:
            if pid == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    env = fh.read()
            except OSError:
                continue
            if raw in env.split(b"\0"):
                pids.append(pid)
            elif not env and attempt == 0:
                unread.append(pid)  # caught mid-exec: its environ reads empty for a moment
        if not unread:
            break
        entries, unread = unread, []
        time.sleep(0.01)
    return pids


def kill_marked(needle: str) -> int:
    """Kill every process carrying `needle` in its environment; return how many."""
    procs = []
    for pid in marked(needle):
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=2)
    return len(procs)


def run_command(
    command: str | Sequence[str],
    cwd: Path,
    log_path: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    merge_stderr: bool = True,
    stdin: Path | None = None,
    grace: float = GRACE_SECONDS,
    pass_fds: Sequence[int] = (),
    watch: Callable[[], str | None] | None = None,
    poll: Callable[[float], str | None] | None = None,
) -> RunResult:
    """Run `command` in `cwd`, killed with its whole tree at `timeout`.

    A string runs through /bin/sh; a sequence is an argv (no shell). `stdin` is a
    file to feed on standard input (default: none). `grace` is the wait between
    SIGTERM and SIGKILL at the deadline.

    `on_start(pgid)` lets the caller persist the group id (to sweep it after a
    harness crash); `on_tick(elapsed)` drives progress displays; `should_stop()`
    returning True ends the run early (Ctrl-C), recorded as interrupted. With
    `merge_stderr=False`, stderr goes to the log path with suffix `.err`. `pass_fds`
    are inherited by the child (pipes to a model server); `watch()` is polled about
    once a second and a reason it returns kills the run (`RunResult.violation`);
    `poll(elapsed)` is the same on every pass of the loop (0.1-0.25 s), for cheap checks
    that need the precision (the budget clock of `execution.budget`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    env = {**(os.environ if env is None else env), "AUTORESEARCH_RUN_TOKEN": token}
    start = time.monotonic()
    err_path = log_path if merge_stderr else log_path.with_suffix(".err")
    with open(log_path, "wb") as log, open(err_path, "ab") as err, \
            open(stdin or os.devnull, "rb") as inp:
        proc = subprocess.Popen(
            command, shell=isinstance(command, str), cwd=cwd, env=env, stdout=log,
            stderr=subprocess.STDOUT if merge_stderr else err, stdin=inp,
            start_new_session=True, pass_fds=tuple(pass_fds),
        )
    pgid = proc.pid  # start_new_session makes the child its own group leader
    seen: dict[int, psutil.Process] = {}
    peak = 0.0
    timed_out = interrupted = False
    violation = ""
    next_watch = 1.0
    try:
        root = psutil.Process(proc.pid)
    except psutil.Error:
        root = None
    next_sample = 0.0
    try:
        if on_start:  # inside the try: if recording the group fails, the group still dies
            on_start(pgid)
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                timed_out = True
                break
            if should_stop and should_stop():
                interrupted = True
                break
            if watch is not None and elapsed >= next_watch:
                next_watch = elapsed + 1.0
                violation = watch() or ""
                if violation:
                    break
            if poll is not None:
                violation = poll(elapsed) or ""
                if violation:
                    break
            if root is not None and elapsed >= next_sample:
                procs = _tree(root)
                for p in procs:
                    seen.setdefault(p.pid, p)
                peak = max(peak, _rss_mb(procs))
                # Sample often early (short runs), then every half second.
                next_sample = elapsed + (0.1 if elapsed < 2 else 0.5)
            if on_tick:
                on_tick(elapsed)
            # wait() with a timeout polls waitpid with a short, growing delay: a quick
            # command is noticed within a millisecond or two, a long one costs no CPU.
            try:
                proc.wait(timeout=min(0.1 if elapsed < 1 else 0.25, max(0.0, timeout - elapsed)))
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        # A second Ctrl-C (KeyboardInterrupt) or any bug here must not orphan the tree.
        kill_group(pgid, [p for p in seen.values() if _alive(p)], grace=1.0, reap=proc.poll)
        raise
    # Kill the group at the deadline, and always sweep leftovers (a daemonized
    # grandchild, a `sleep &` the script forgot) once the main process is gone.
    stopped = timed_out or interrupted or bool(violation)
    if not stopped:
        proc.wait()
    seconds = time.monotonic() - start
    # Leftovers: descendants seen while polling, and any process still carrying the
    # run's token (setsid daemons included); the group itself is signalled below.
    candidates = dict(seen)
    for pid in marked(f"AUTORESEARCH_RUN_TOKEN={token}"):
        try:
            candidates.setdefault(pid, psutil.Process(pid))
        except psutil.Error:
            continue
    leftovers = [p for p in candidates.values() if p.pid != proc.pid and _alive(p)]
    # A process already being torn down (a sandbox's PID namespace dies just after its
    # main process) is not a leftover: give the kernel a moment before counting.
    settle = time.monotonic() + 1.0
    while leftovers and not stopped and time.monotonic() < settle:
        time.sleep(0.02)
        leftovers = [p for p in leftovers if _alive(p)]
    if stopped or leftovers or group_alive(pgid):
        kill_group(pgid, leftovers, grace=grace if stopped else 1.0, reap=proc.poll)
    proc.wait()
    code = None if timed_out else proc.returncode
    return RunResult(exit_code=code, timed_out=timed_out, seconds=seconds,
                     peak_rss_mb=peak, log=log_path, interrupted=interrupted,
                     leftovers=0 if stopped else len(leftovers), violation=violation)


def log_tail(path: Path, lines: int = 50) -> str:
    """The last `lines` lines of a log, for crash reasons and proposer feedback."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
