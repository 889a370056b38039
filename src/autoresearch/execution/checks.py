"""The task's checks: the test suite (or any command) that gates every keep.

A check is a sandboxed phase like every other (the same boundary and network rule, via
`Guards.phases`), in a fresh export of the commit, with its own limit (`check_timeout`),
retries for a flaky suite (`check_retries`) and its own environment (`check_env`).
They run once on the baseline (`baseline_checks`), so a gate that cannot pass stops
the night before it starts, and on every would-be keep (`run_checks`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.phase import Phase
from autoresearch.execution.process import RunResult, log_tail
from autoresearch.task import TaskSpec

if TYPE_CHECKING:  # measure imports this module; Guards is only a type here
    from autoresearch.execution.measure import Guards

__all__ = ["baseline_checks", "check_env", "error_line", "run_checks"]

# Lines that say why a command failed, when no Python traceback does: a shell's
# `pyhton: not found`, a missing file, a compiler's or tool's `error:` line.
_ERROR_HINT = re.compile(r"not found|No such file|No module named|Permission denied|Killed|"
                         r"Segmentation fault|"
                         r"\b(?:error|Error|ERROR|FAILED|Fatal|fatal)\b")


_VAR = re.compile(r"\$(?:(\w+)|\{(\w+)\})")


def error_line(text: str) -> str | None:
    """The one line of a failed command's output that says what went wrong.

    A Python traceback's exception line (the first line after the last `Traceback`
    header that is not indented: `SyntaxError: invalid syntax`, `ValueError: ...`), else
    the last line that looks like an error. None when nothing does."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    header = max((i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent")),
                 default=None)
    if header is not None:
        for ln in lines[header + 1:]:
            if not ln.startswith((" ", "\t")):
                return ln[:300]
    hinted = [ln for ln in lines if _ERROR_HINT.search(ln)]
    return hinted[-1].strip()[:300] if hinted else None



def check_env(task: TaskSpec, env: dict[str, str]) -> dict[str, str]:
    """The environment of a check: the project's tools first, the harness's last.

    A check runs the project's own test suite, so `python -m pytest` must find the
    project's interpreter (an activated venv, or one named in `check_env`), not the venv
    autoresearch runs from: the harness's interpreter directory goes at the *end* of
    PATH, where it only serves a `python` nothing else provides (a pipx install of the
    tool leaves it out of PATH entirely). `check_env` values are set last, with `$VAR`
    and `${VAR}` expanded against that environment.
    """
    ours = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != ours]
    out = {**env, "PATH": os.pathsep.join([*path, ours])}
    base = dict(out)
    for name, value in task.check_env.items():
        out[name] = _VAR.sub(lambda m: base.get(m.group(1) or m.group(2), ""), value)
    return out


def _venvs(path: str) -> tuple[Path, ...]:
    """Virtual environments (and their base interpreters) named by PATH entries: a check
    in the sandbox sees them read-only, so the project's own venv works there."""
    found: list[Path] = []
    for entry in path.split(os.pathsep):
        if not os.path.isabs(entry):  # relative entries resolve inside the export
            continue
        root = Path(entry).parent
        cfg = root / "pyvenv.cfg"
        if not cfg.is_file():
            continue
        found.append(root)
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            home = Path(value.strip()).parent
            if key.strip() == "home" and home.is_dir() and not str(home).startswith("/usr"):
                found.append(home)
    return tuple(dict.fromkeys(found))


def _run_check(task: TaskSpec, guards: Guards, check: str, log: Path, env: dict[str, str],
               should_stop: Callable[[], bool] | None) -> tuple[RunResult, int]:
    """One check, retried up to `check_retries` times while it fails; the last result and
    the number of attempts. A violation or an interrupted check is never retried."""
    env = check_env(task, env)
    access = guards.access("check")
    venvs = _venvs(env["PATH"])
    guards.phases.sandbox.refuse_forbidden(venvs, "a venv on the checks' PATH")
    access = replace(access, readonly=(*access.readonly, *venvs))
    attempts = 0
    while True:
        attempts += 1
        path = log if attempts == 1 else log.with_suffix(f".retry{attempts - 1}.log")
        res = guards.phases.run(Phase("check", check, guards.export(guards.scratch / "check"),
                                      path, task.check_timeout, env, access),
                                should_stop=should_stop)
        if res.ok or res.violation or res.interrupted or attempts > task.check_retries:
            return res, attempts


def _check_failure(check: str, res: RunResult, attempts: int) -> str:
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if res.timed_out:
        why = f"timed out at the {res.seconds:.0f}s check_timeout"
    else:
        quote = error_line(log_tail(res.log, 200))
        why = f"exited {res.exit_code}" + (f": {quote}" if quote else "")
    return f"check `{check}` {why}{tries}"


def _each(task: TaskSpec, guards: Guards, logs: Path, name: str, env: dict[str, str],
          should_stop: Callable[[], bool] | None
          ) -> Iterator[tuple[str, RunResult, int, str | None]]:
    """Run the checks in order, each under the tripwire, logged as NAME.checkJ.log; yield
    (check, result, attempts, what it changed). The caller stops at the first failure."""
    for j, check in enumerate(task.checks):
        guards.tripwire.arm()
        res, attempts = _run_check(task, guards, check, logs / f"{name}.check{j}.log", env,
                                   should_stop)
        yield check, res, attempts, guards.tampered()


def baseline_checks(task: TaskSpec, guards: Guards, logs: Path, env: dict[str, str],
                    should_stop: Callable[[], bool] | None = None) -> str | None:
    """Run the checks once on the baseline, before any experiment.

    A gate that fails on the unmodified code would block every keep of the night, so
    the loop stops instead. Returns None when every check passes (or was interrupted),
    else the failure in words: the check, its output tail and how to fix it."""
    for check, res, attempts, changed in _each(task, guards, logs, "baseline", env,
                                               should_stop):
        if changed:
            return f"check `{check}` changed {changed} on the baseline; fix the check."
        if res.interrupted:
            return None
        if res.violation or not res.ok:
            what = f"check `{check}`: {res.violation}" if res.violation else \
                _check_failure(check, res, attempts)
            fix = ("raise `check_timeout` in autoresearch.toml" if res.timed_out else
                   "make it pass on your last commit, or set `check_retries` if it is flaky")
            return (f"{what} on the unmodified baseline, so no change could ever be kept.\n"
                    f"{log_tail(res.log, 20)}\nLog: {res.log}. Fix: {fix}. A check runs in "
                    "a fresh export of your last commit, with your PATH first and the "
                    "harness's interpreter last; set `check_env` (e.g. PATH = "
                    "\"/path/to/project/.venv/bin:$PATH\") if it needs another "
                    "environment. See \"Checks\" in the README.")
    return None


def run_checks(task: TaskSpec, guards: Guards, logs: Path, exp_id: int, env: dict[str, str],
               verdict: Verdict, should_stop: Callable[[], bool] | None = None) -> Verdict:
    """The task's checks, each a sandboxed phase in a fresh export, on a would-be keep.

    Returns `verdict` unchanged when all pass; otherwise `checks_failed` (a check that
    failed or timed out, after `check_retries` more attempts), `invalid` (one that changed
    what the harness trusts) or `interrupted` (the harness stopped it: not the change's
    fault). Checks get `check_env` and `check_timeout`, not the run's."""
    for check, res, attempts, changed in _each(task, guards, logs, f"{exp_id:04d}", env,
                                               should_stop):
        if changed:
            return Verdict("invalid", f"check `{check}` changed {changed}", verdict.evidence)
        if res.violation:
            return Verdict("invalid", f"check `{check}`: {res.violation}", verdict.evidence)
        if res.interrupted:
            return Verdict("interrupted", f"check `{check}` interrupted by the user (would "
                           f"have been kept: {verdict.reason})", verdict.evidence)
        if not res.ok:
            return Verdict("checks_failed", f"{_check_failure(check, res, attempts)} (would "
                           f"have been kept: {verdict.reason})\n{log_tail(res.log, 20)}",
                           verdict.evidence)
    return verdict
