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
    program: str = "program.md"
    proposer: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
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
    "time_budget": ((int, float), True, None),
    "timeout": ((int, float), False, None),
    "program": ((str,), False, "program.md"),
    "metric": ((dict,), True, None),
    "proposer": ((dict,), False, {}),
    "decision": ((dict,), False, {}),
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
    protected = list(data.get("protected", []))
    for name in protected:
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"protected: {name!r} must be a path relative to {root}.")
        if not (root / name).is_file():
            raise ConfigError(f"protected: {name!r} does not exist under {root}.")
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
        time_budget=budget,
        timeout=timeout,
        metric=MetricSpec(metric["name"].strip(), direction),
        program=program,
        proposer=dict(data.get("proposer", {})),
        decision=dict(data.get("decision", {})),
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
