"""The task spec: `autoresearch.toml`, validated on load.

A task is four things the harness enforces: which files may change (`editable`),
which files are hash-locked (`protected`), one metric with a direction, and a
fixed time budget. Everything is checked here, once, so a typo fails at start
with the key's path rather than at experiment 40.

Sections owned by extensions (`[proposer]`, `[decision]`) are validated for
shape here and interpreted by their owners; unknown keys anywhere are errors.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"


class ConfigError(ValueError):
    """A task file that cannot be used. The message names the key and the fix."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    direction: str  # "minimize" | "maximize"

    def better(self, a: float, b: float) -> bool:
        """True when `a` is strictly better than `b`."""
        return a < b if self.direction == "minimize" else a > b


@dataclass(frozen=True)
class ExecutionSpec:
    """`[execution]`: where and how many experiments run at once (CLI flags override)."""

    workers: int = 1
    pipeline: int | None = None  # proposals kept ready; None: one per worker
    devices: tuple[str, ...] | None = None  # GPU ids for the slots; None: detected
    backend: str = "local"  # "local" | "ray"
    ray_address: str | None = None
    num_cpus: float = 1.0  # per experiment, on Ray
    num_gpus: float = 0.0
    stale: str = "rerun"  # a keep measured on an older incumbent: "rerun" or "discard"


_EXECUTION: dict[str, tuple[type, ...]] = {
    "workers": (int,), "pipeline": (int,), "devices": (list,), "backend": (str,),
    "ray_address": (str,), "num_cpus": (int, float), "num_gpus": (int, float), "stale": (str,)}


def parse_execution(data: dict[str, Any]) -> ExecutionSpec:
    for key, value in data.items():
        if key not in _EXECUTION:
            raise ConfigError(f"execution.{key}: unknown key. Known keys: "
                              f"{', '.join(sorted(_EXECUTION))}.")
        _check_type(f"execution.{key}", value, _EXECUTION[key])
    values: dict[str, Any] = {k: tuple(v) if k == "devices" else v for k, v in data.items()}
    spec = ExecutionSpec(**values)
    if spec.workers < 1:
        raise ConfigError(f"execution.workers: must be at least 1, got {spec.workers}")
    if spec.pipeline is not None and spec.pipeline < 0:
        raise ConfigError(f"execution.pipeline: must be 0 or more, got {spec.pipeline}")
    if spec.backend not in ("local", "ray"):
        raise ConfigError(f"execution.backend: expected \"local\" or \"ray\", got "
                          f"{spec.backend!r}")
    if spec.stale not in ("rerun", "discard"):
        raise ConfigError(f"execution.stale: expected \"rerun\" or \"discard\", got "
                          f"{spec.stale!r}")
    return spec


@dataclass(frozen=True)
class TaskSpec:
    root: Path
    editable: tuple[str, ...]
    protected: tuple[str, ...]
    run: str
    metric: MetricSpec
    time_budget: float
    timeout: float
    evaluate: str | None = None
    holdout: str | None = None  # like evaluate, on a split the proposer never sees
    eval_only: tuple[str, ...] = ()  # data paths the training phase must not read
    readonly: tuple[str, ...] = ()  # data paths no phase may change (tokenizer, shards)
    # None: phases run without network wherever the harness can cut it; True: with it;
    # False: without it, and the harness refuses to start where it cannot cut it.
    network: bool | None = None
    model_server: str | None = None  # serves the model to a scorer that never imports it
    sandbox: str = "auto"  # "auto" | "required" | "none" (see execution.sandbox)
    sandbox_expose: tuple[str, ...] = ()  # extra read-only paths for every phase
    phase_disk_mb: int = 4096  # what one phase may write (its export, /tmp, $HOME)
    checks: tuple[str, ...] = ()
    check_timeout: float = 600.0  # seconds one check may take; its own limit, not `timeout`
    check_retries: int = 0  # extra attempts for a check that fails (a flaky test suite)
    check_env: dict[str, str] = field(default_factory=dict)  # set for checks; $VAR expanded
    program: str = "program.md"
    proposer: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    execution: ExecutionSpec = field(default_factory=lambda: ExecutionSpec())
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)  # see tracking.config

    def program_text(self, base: Path | None = None) -> str:
        return ((base or self.root) / self.program).read_text(encoding="utf-8")


# key -> (python types accepted, required, default)
_TOP: dict[str, tuple[tuple[type, ...], bool, Any]] = {
    "editable": ((list, str), True, None),
    "protected": ((list,), False, []),
    "run": ((str,), True, None),
    "evaluate": ((str,), False, None),
    "holdout": ((str,), False, None),
    "eval_only": ((list,), False, []),
    "readonly": ((list,), False, []),
    "network": ((bool,), False, None),
    "model_server": ((str,), False, None),
    "sandbox": ((str,), False, "auto"),
    "sandbox_expose": ((list,), False, []),
    "phase_disk_mb": ((int,), False, 4096),
    "checks": ((list,), False, []),
    "check_timeout": ((int, float), False, None),
    "check_retries": ((int,), False, 0),
    "check_env": ((dict,), False, {}),
    "time_budget": ((int, float), True, None),
    "timeout": ((int, float), False, None),
    "program": ((str,), False, "program.md"),
    "metric": ((dict,), True, None),
    "proposer": ((dict,), False, {}),
    "decision": ((dict,), False, {}),
    "execution": ((dict,), False, {}),
    "tracking": ((dict,), False, {}),
}
_METRIC_KEYS = {"name", "direction"}
_DIRECTIONS = ("minimize", "maximize")


def _typename(types: tuple[type, ...]) -> str:
    names = {list: "a list of strings", str: "a string", int: "a number", float: "a number",
             dict: "a table", bool: "true or false"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    # bool is an int subclass; a budget of `true` is a typo, not one second.
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ConfigError(f"{key}: expected {_typename(types)}, got {value!r}")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")


def _protected_files(patterns: list[str], root: Path) -> list[str]:
    """Protected paths or globs (like `editable`), expanded to the files they match now.

    Expanded once, at load: only editable files may change, so no file matching a glob
    can appear later. The harness's own directories never count as task files."""
    files: list[str] = []
    for pattern in patterns:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfigError(f"protected: {pattern!r} must be a path or glob relative to "
                              f"{root}.")
        found = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern)
                       if p.is_file() and not {".git", ".autoresearch"} & set(
                           p.relative_to(root).parts))
        if not found:
            raise ConfigError(f"protected: {pattern!r} matches no file under {root}. "
                              "Create the file or fix the pattern.")
        files += [f for f in found if f not in files]
    return files


def parse_task(data: dict[str, Any], root: Path, source: str = CONFIG_NAME) -> TaskSpec:
    """Validate a decoded TOML table and build a TaskSpec. Paths are checked under `root`."""
    for key in data:
        if key not in _TOP:
            known = ", ".join(sorted(_TOP))
            raise ConfigError(f"{source}: unknown key '{key}'. Known keys: {known}.")
    for key, (types, required, _default) in _TOP.items():
        if key not in data:
            if required:
                raise ConfigError(f"{source}: missing required key '{key}'.")
            continue
        _check_type(key, data[key], types)

    metric = data["metric"]
    for key in metric:
        if key not in _METRIC_KEYS:
            raise ConfigError(f"metric.{key}: unknown key. Known keys: direction, name.")
    if not isinstance(metric.get("name"), str) or not metric["name"].strip():
        raise ConfigError('metric.name: required, e.g. name = "val_bpb".')
    if not re.fullmatch(r"[A-Za-z_][\w.\-/]*", metric["name"].strip()):
        raise ConfigError(f"metric.name: {metric['name']!r} cannot be printed as `name: value` "
                          "or `METRIC name=value`; use letters, digits, '_', '.', '-', '/'.")
    direction = metric.get("direction", "minimize")
    if direction not in _DIRECTIONS:
        raise ConfigError(f"metric.direction: expected 'minimize' or 'maximize', got {direction!r}")

    editable = data["editable"]
    editable = [editable] if isinstance(editable, str) else list(editable)
    if not editable:
        raise ConfigError("editable: at least one file must be editable.")
    for pattern in editable:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfigError(f"editable: {pattern!r} must be a path relative to {root}, "
                              "e.g. \"train.py\".")
        if not any(root.glob(pattern)):
            raise ConfigError(f"editable: {pattern!r} matches no file under {root}. "
                              "Create the file or fix the pattern.")
    protected = _protected_files(list(data.get("protected", [])), root)
    program = data.get("program", "program.md")
    if not (root / program).is_file():
        raise ConfigError(f"program: {program!r} does not exist under {root}. "
                          "Write the research charter there, or run `autoresearch init`.")

    if data.get("holdout") and not data.get("evaluate"):
        raise ConfigError("holdout: needs `evaluate` too; the holdout split is scored by the "
                          "same kind of command on data the proposer never sees.")
    if data.get("model_server") and not data.get("evaluate"):
        raise ConfigError("model_server: needs `evaluate` too; the evaluate command is the "
                          "trusted scorer that queries the model server.")
    if data.get("sandbox", "auto") not in ("auto", "required", "none"):
        raise ConfigError(f"sandbox: expected \"auto\", \"required\" or \"none\", got "
                          f"{data['sandbox']!r}")
    if data.get("phase_disk_mb", 4096) <= 0:
        raise ConfigError(f"phase_disk_mb: must be a positive number of megabytes, got "
                          f"{data['phase_disk_mb']}")
    budget = float(data["time_budget"])
    if not math.isfinite(budget) or budget <= 0:
        raise ConfigError(f"time_budget: must be a positive number of seconds, got {budget}")
    timeout = float(data.get("timeout") or max(2 * budget, budget + 60))
    if not math.isfinite(timeout):
        raise ConfigError(f"timeout: must be a finite number of seconds, got {timeout}")
    if timeout < budget:
        raise ConfigError(f"timeout: {timeout} is below time_budget {budget}; "
                          "the hard kill must leave room for the budget.")
    check_timeout = float(data.get("check_timeout", max(timeout, 600.0)))
    if not math.isfinite(check_timeout) or check_timeout <= 0:
        raise ConfigError(f"check_timeout: must be a positive number of seconds, got "
                          f"{data['check_timeout']}")
    if data.get("check_retries", 0) < 0:
        raise ConfigError(f"check_retries: must be 0 or more, got {data['check_retries']}")
    check_env = dict(data.get("check_env", {}))
    for name, value in check_env.items():
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ConfigError(f"check_env.{name}: expected NAME = \"value\" (a string, e.g. "
                              'PATH = "/path/to/project/.venv/bin:$PATH"), got ' f"{value!r}")
    from autoresearch.tracking.config import validate_tracking  # no tracker is imported

    tracking = validate_tracking(data.get("tracking", {}))
    run = data["run"].strip()
    if not run:
        raise ConfigError("run: the experiment command is empty.")

    return TaskSpec(
        root=root,
        editable=tuple(editable),
        protected=tuple(protected),
        run=run,
        evaluate=data.get("evaluate"),
        holdout=data.get("holdout"),
        eval_only=tuple(data.get("eval_only", [])),
        readonly=tuple(data.get("readonly", [])),
        network=data.get("network"),
        model_server=data.get("model_server"),
        sandbox=data.get("sandbox", "auto"),
        sandbox_expose=tuple(data.get("sandbox_expose", [])),
        phase_disk_mb=int(data.get("phase_disk_mb", 4096)),
        checks=tuple(data.get("checks", [])),
        check_timeout=check_timeout,
        check_retries=int(data.get("check_retries", 0)),
        check_env=check_env,
        time_budget=budget,
        timeout=timeout,
        metric=MetricSpec(metric["name"].strip(), direction),
        program=program,
        proposer=dict(data.get("proposer", {})),
        decision=dict(data.get("decision", {})),
        execution=parse_execution(dict(data.get("execution", {}))),
        tracking=tracking,
    )


def load_task(path: Path) -> TaskSpec:
    """Read and validate a task file. Raises ConfigError with an actionable message."""
    if not path.is_file():
        raise ConfigError(f"{path}: no task file. Run `autoresearch init` to create one, "
                          "or pass --config PATH.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_task(data, path.parent.resolve(), source=path.name)
