"""One command under a hard limit: real subprocesses, real process groups."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from autoresearch.execution.process import run_command


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(path: Path, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def ready(path: Path) -> Callable[[float], None]:
    """An `on_tick` that holds the harness's loop until the phase wrote `path`: the
    deadline is then reached only once the process under test is set up, however loaded
    the machine (a 1 s timeout used to race the child's start-up)."""
    def tick(_elapsed: float) -> None:
        wait_for(path, 120)
    return tick


def test_grandchild_sleeping_forever_is_killed_at_timeout(tmp_path: Path) -> None:
    script = "(sleep 1000 & echo $! > grandchild.pid; wait) & wait"
    res = run_command(script, tmp_path, tmp_path / "run.log", timeout=1.0,
                      on_tick=ready(tmp_path / "grandchild.pid"))
    pid = int(wait_for(tmp_path / "grandchild.pid"))
    assert res.timed_out and res.exit_code is None and not res.ok
    assert not alive(pid), "the grandchild survived the timeout"


def test_term_ignoring_child_gets_sigkill(tmp_path: Path) -> None:
    # The pid file is written after SIG_IGN is in place: once it exists, SIGTERM is ignored.
    code = ("import signal, time, os; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open('child.pid', 'w').write(str(os.getpid())); time.sleep(1000)")
    res = run_command(f"{sys.executable} -c \"{code}\"", tmp_path, tmp_path / "run.log",
                      timeout=1.0, on_tick=ready(tmp_path / "child.pid"))
    pid = int(wait_for(tmp_path / "child.pid"))
    assert res.timed_out
    assert not alive(pid)


def test_background_process_left_after_exit_is_swept(tmp_path: Path) -> None:
    res = run_command("sleep 1000 & echo $! > bg.pid; echo done", tmp_path, tmp_path / "r.log",
                      timeout=30)
    pid = int(wait_for(tmp_path / "bg.pid"))
    assert res.exit_code == 0 and not res.timed_out
    assert not alive(pid), "a background process outlived its experiment"
    assert (tmp_path / "r.log").read_text().strip() == "done"


def test_exit_code_output_and_peak_memory(tmp_path: Path) -> None:
    code = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); " \
           "time.sleep(1.0); print('hi'); raise SystemExit(3)"
    res = run_command(f"{sys.executable} -c \"{code}\"", tmp_path, tmp_path / "m.log",
                      timeout=30)
    assert res.exit_code == 3 and not res.ok
    assert "hi" in (tmp_path / "m.log").read_text()
    assert res.peak_rss_mb > 150, res.peak_rss_mb


def test_should_stop_interrupts(tmp_path: Path) -> None:
    calls: list[int] = []

    def stop() -> bool:  # asked once per poll: the third poll says stop
        calls.append(1)
        return len(calls) >= 3
    res = run_command("sleep 1000", tmp_path, tmp_path / "s.log", timeout=600,
                      should_stop=stop)
    assert res.interrupted and not res.timed_out and not res.ok and len(calls) == 3


def test_daemon_that_escaped_with_setsid_is_swept(tmp_path: Path) -> None:
    # setsid leaves our process group and session; the inherited environment gives it away.
    res = run_command("setsid sleep 1000 & echo $! > d.pid", tmp_path, tmp_path / "d.log",
                      timeout=30)
    pid = int(wait_for(tmp_path / "d.pid"))
    assert res.exit_code == 0
    assert not alive(pid), "a setsid daemon outlived its experiment"
