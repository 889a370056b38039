"""Checks as a first-class gate: own timeout, retries, the project's PATH, the network rule,
and one run on the baseline that stops a night whose gate cannot pass."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from test_loop import ledger

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.checks import baseline_checks, check_env, error_line, run_checks
from autoresearch.execution.measure import Guards
from autoresearch.execution.phase import PhaseRunner
from autoresearch.execution.sandbox import Sandbox, bwrap_works
from autoresearch.integrity.tripwire import Canaries, Tripwire, network_prefix
from autoresearch.task import ConfigError, TaskSpec, load_task

STRICT = '\n[decision]\npolicy = "strict"\n'
needs_bwrap = pytest.mark.skipif(bwrap_works() is not None, reason="needs bubblewrap")


def _task(tmp_path: Path, checks: list[str], extra: str = "") -> TaskSpec:
    repo = make_repo(tmp_path / "repo", toml=toy_toml(extra, checks=json.dumps(checks)))
    return load_task(repo / "autoresearch.toml")


def _guards(task: TaskSpec, tmp_path: Path, sandbox: str = "auto",
            network: bool = False) -> Guards:
    def export(dest: Path) -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(task.root, dest, ignore=shutil.ignore_patterns(".git"))
        return dest

    # As make_guards builds it: without the sandbox, `unshare --net` cuts the network.
    prefix = network_prefix() if sandbox == "none" else None
    return Guards(Tripwire([]), Canaries([]), tmp_path / "scratch", export, lambda: True,
                  PhaseRunner(Sandbox(sandbox), net_prefix=prefix), network=network)


def test_check_settings_are_validated(tmp_path: Path) -> None:
    task = _task(tmp_path / "a", [])
    assert task.check_timeout == 600 and task.check_retries == 0 and task.check_env == {}
    task = _task(tmp_path / "b", [], 'check_timeout = 5\ncheck_retries = 2\n'
                 'check_env = { PATH = "/x:$PATH" }\n')
    assert (task.check_timeout, task.check_retries, task.check_env) == (5, 2, {"PATH": "/x:$PATH"})
    for extra, problem in (("check_timeout = 0\n", "check_timeout: must be positive"),
                           ("check_retries = -1\n", "check_retries: must be 0 or more"),
                           ("check_env = { PATH = 3 }\n", "check_env.PATH: expected")):
        with pytest.raises(ConfigError, match=problem.replace("positive", "a positive")):
            _task(tmp_path / str(abs(hash(extra))), [], extra)


def test_checks_get_the_projects_path_first_and_check_env(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    task = _task(tmp_path, [], 'check_env = { PATH = "/proj/bin:$PATH", MODE = "ci" }\n')
    ours = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{ours}:/usr/bin:/bin")
    env = check_env(task, {"PATH": f"{ours}:/usr/bin", "A": "1"})
    # The harness's venv is last: the project's own tools win; `python` is still found.
    assert env["PATH"] == f"/proj/bin:/usr/bin:/bin:{ours}"
    assert env["MODE"] == "ci" and env["A"] == "1"


@needs_bwrap
def test_a_project_venv_named_in_check_env_is_used_inside_the_sandbox(tmp_path: Path) -> None:
    """`python -m projtool` works only with the project's venv first on PATH: the case the
    field test hit with `python -m pytest` (the harness's venv was first)."""
    venv = tmp_path / "projvenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "projtool.py").write_text("print('project tool ran')\n")
    task = _task(tmp_path, ["python -m projtool"],
                 f'check_env = {{ PATH = "{venv}/bin:$PATH" }}\n')
    guards = _guards(task, tmp_path)
    assert baseline_checks(task, guards, tmp_path / "logs", dict(os.environ)) is None
    assert "project tool ran" in (tmp_path / "logs" / "baseline.check0.log").read_text()
    bare = _task(tmp_path / "b", ["python -m projtool"])  # without it: not found, explained
    problem = baseline_checks(bare, _guards(bare, tmp_path / "b"), tmp_path / "b" / "logs",
                              dict(os.environ))
    assert problem is not None
    assert "check `python -m projtool` exited 1: " in problem
    assert "No module named projtool" in problem.splitlines()[0]
    assert "on the unmodified baseline" in problem and "check_env" in problem


def test_baseline_checks_report_the_tail_and_the_fix(tmp_path: Path) -> None:
    task = _task(tmp_path, ['python -c "print(1)"',
                            'python -c "import sys; print(\'boom here\'); sys.exit(4)"'])
    problem = baseline_checks(task, _guards(task, tmp_path), tmp_path / "logs", dict(os.environ))
    assert problem is not None and "exited 4" in problem and "boom here" in problem
    assert "Fix: make it pass on your last commit, or set `check_retries`" in problem


def test_checks_have_their_own_timeout(tmp_path: Path) -> None:
    """The run's timeout is 60 s here; the check is killed at its own 1 s limit."""
    task = _task(tmp_path, ['python -c "import time; time.sleep(30)"'], "check_timeout = 1\n")
    problem = baseline_checks(task, _guards(task, tmp_path), tmp_path / "logs", dict(os.environ))
    assert problem is not None and "timed out at the 1s check_timeout" in problem
    assert "raise `check_timeout`" in problem


def test_a_flaky_check_is_retried(tmp_path: Path) -> None:
    """Fails on its first attempt (a counter outside the export), passes on the second."""
    counter = tmp_path / "attempts"
    flaky = (f'python -c "import pathlib, sys; p = pathlib.Path(\'{counter}\'); '
             'n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); '
             'sys.exit(0 if n else 1)"')
    task = _task(tmp_path, [flaky], "check_retries = 1\n")
    guards = _guards(task, tmp_path, sandbox="none")
    keep = Verdict("keep", "better")
    assert run_checks(task, guards, tmp_path / "logs", 3, dict(os.environ), keep) == keep
    assert counter.read_text() == "2"
    counter.unlink()
    strict = _task(tmp_path / "s", [flaky])  # no retries: the first failure is final
    got = run_checks(strict, _guards(strict, tmp_path / "s", "none"), tmp_path / "logs", 3,
                     dict(os.environ), keep)
    assert got.status == "checks_failed" and counter.read_text() == "1"


def test_a_check_the_harness_stops_is_interrupted_not_failed(tmp_path: Path) -> None:
    task = _task(tmp_path, ['python -c "import time; time.sleep(600)"'], "check_retries = 3\n")
    polls: list[int] = []

    def stop() -> bool:  # the user's Ctrl-C, on the harness's third poll
        polls.append(1)
        return len(polls) >= 3
    got = run_checks(task, _guards(task, tmp_path), tmp_path / "logs", 5, dict(os.environ),
                     Verdict("keep", "better"), stop)
    assert got.status == "interrupted" and "would have been kept: better" in got.reason
    assert len(polls) == 3  # not retried: a stop is not a flaky failure
    assert baseline_checks(task, _guards(task, tmp_path), tmp_path / "logs", dict(os.environ),
                           lambda: True) is None


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_checks_follow_the_network_rule(tmp_path: Path, sandbox: str) -> None:
    """network = false reaches the checks too: a check cannot connect to a local server,
    in the sandbox and, without it, under `unshare --net` (as make_guards sets it up)."""
    if (sandbox == "auto" and bwrap_works()) or (sandbox == "none" and not network_prefix()):
        pytest.skip("needs bubblewrap" if sandbox == "auto" else "needs unshare --net")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def serve() -> None:
        try:
            while True:
                server.accept()[0].close()
        except OSError:  # closed at the end of the test
            return
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connect = (f'python -c "import socket; socket.create_connection((\'127.0.0.1\', {port}), '
               'timeout=3)"')
    task = _task(tmp_path, [connect])
    keep = Verdict("keep", "better")
    cut = run_checks(task, _guards(task, tmp_path, sandbox), tmp_path / "logs", 1,
                     dict(os.environ), keep)
    assert cut.status == "checks_failed"  # bwrap's loopback is up but empty; unshare's down
    assert "Connection refused" in cut.reason or "Network is unreachable" in cut.reason
    open_ = run_checks(task, _guards(task, tmp_path, sandbox, network=True), tmp_path / "logs",
                       2, dict(os.environ), keep)
    assert open_ == keep
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(10)


def test_error_line_quotes_what_went_wrong() -> None:
    tb = ('Traceback (most recent call last):\n  File "train.py", line 3\n    x = = 1\n'
          '        ^\nSyntaxError: invalid syntax\n')
    assert error_line(tb) == "SyntaxError: invalid syntax"
    assert error_line("step 1\n/bin/sh: 1: pyhton: not found\n") == "/bin/sh: 1: pyhton: not found"
    assert error_line("all fine\nbye\n") is None


def test_a_crash_row_quotes_the_error_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", toml=toy_toml(STRICT, run='"pyhton train.py"'))
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "1")
    assert res.returncode == 1, res.stderr
    first = ledger(repo, "t")[0]["reason"].splitlines()[0]
    assert first.startswith("run exited with code 127: ") and "pyhton: not found" in first


def test_a_missing_metric_lists_the_metrics_found(tmp_path: Path) -> None:
    script = "LR = 0.1\nprint('---')\nprint('val_los: 1.0')\nprint('steps: 3')\n"
    repo = make_repo(tmp_path / "r", {"train.py": script}, toml=toy_toml(STRICT))
    res = run_cli(repo, "run", "--tag", "t", "--max-experiments", "1")
    assert res.returncode == 1, res.stderr
    reason = ledger(repo, "t")[0]["reason"]
    assert "metric 'val_loss' not found in the output; metrics found: steps, val_los" in reason
