"""`sweep`: an offline proposer that tunes module-level constants with Optuna ask/tell.

It finds tunable constants in the editable file by AST: module-level
``UPPER_CASE = literal`` assignments of numbers, bools (and strings, when
choices are given). Each experiment asks Optuna for new values of a few of
them (``changes`` per experiment, default 1, in the spirit of one idea per
experiment) and rewrites only those literals in place, so the diff reads
``MATRIX_LR = 0.04 -> 0.05``. The outcome is told back to the study.

What it does not do: it knows nothing about interactions between constants
that were not changed together, and the trials it tells Optuna are measured on
top of whatever incumbent was current then (a kept change shifts the
landscape). That is the trade-off of one change at a time; TPE copes well
enough in practice, and the ledger keeps every point for a proper analysis.

The default space, per constant of value v: positive float -> log-uniform
[v/4, 4v]; positive int -> [max(1, v//2), 2v]; bool -> {True, False}; zero,
negative and string values are left alone unless `[proposer.sweep]` names them:

    [proposer.sweep]
    changes = 1            # constants changed per experiment
    seed = 0
    MATRIX_LR = { low = 0.01, high = 0.1, log = true }
    DEPTH = { low = 2, high = 8 }
    WINDOW_PATTERN = ["L", "SSSL"]

When any UPPER_CASE key is given, only those constants are tuned.
"""

from __future__ import annotations

import ast
import random
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import Context, Proposal, Proposer, ProposerError
from autoresearch.task import ConfigError, TaskSpec

Value = int | float | bool | str
Direction = typing.Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Constant:
    name: str
    value: Value
    line: int  # 1-based
    col: int  # character offsets of the literal on that line
    end_col: int


def find_constants(source: str) -> dict[str, Constant]:
    """Module-level ``NAME = literal`` assignments with UPPER_CASE names (last one wins)."""
    found: dict[str, Constant] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and target.id.isupper()):
            continue
        literal: Any
        if isinstance(value, ast.Constant) and isinstance(value.value, (int, float, str)):
            literal = value.value
        elif (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub)
              and isinstance(value.operand, ast.Constant)
              and isinstance(value.operand.value, (int, float))
              and not isinstance(value.operand.value, bool)):
            literal = -value.operand.value
        else:
            continue
        if value.lineno != value.end_lineno:
            continue  # multi-line string literals are not tunable
        found[target.id] = Constant(target.id, literal, value.lineno, value.col_offset,
                                    value.end_col_offset or value.col_offset)
    return found


def format_value(value: Value) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return repr(float(f"{value:.4g}"))  # short, readable diffs
    return repr(value)


def rewrite(source: str, constant: Constant, value: Value) -> str:
    """Replace only the literal of `constant` in `source`."""
    lines = source.splitlines(keepends=True)
    line = lines[constant.line - 1]
    # AST offsets count UTF-8 bytes; convert through bytes so non-ASCII lines stay right.
    raw = line.encode()
    new = raw[:constant.col] + format_value(value).encode() + raw[constant.end_col:]
    lines[constant.line - 1] = new.decode()
    return "".join(lines)


def default_distribution(value: Value) -> BaseDistribution | None:
    if isinstance(value, bool):
        return CategoricalDistribution([True, False])
    if isinstance(value, int):
        return IntDistribution(max(1, value // 2), value * 2) if value > 0 else None
    if isinstance(value, float):
        return FloatDistribution(value / 4, value * 4, log=True) if value > 0 else None
    return None


def parse_space(table: dict[str, Any]) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for name, spec in table.items():
        key = f"proposer.sweep.{name}"
        try:
            space[name] = _distribution(key, spec)
        except (ValueError, TypeError) as exc:  # e.g. log=true with low=0, low > high
            raise ConfigError(f"{key}: {exc}") from None
    return space


def _distribution(key: str, spec: Any) -> BaseDistribution:
    if isinstance(spec, list) and spec:
        return CategoricalDistribution(spec)
    if not (isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log",
                                                                        "step"}):
        raise ConfigError(f"{key}: expected a list of choices or a table "
                          f"{{ low = ..., high = ..., log = true|false }}, got {spec!r}")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) and not log:
        return IntDistribution(low, high, step=int(spec.get("step", 1)))
    return FloatDistribution(float(low), float(high), log=log, step=spec.get("step"))


class SweepProposer(Proposer):
    name = "sweep"

    def __init__(self, task: TaskSpec, options: dict[str, Any]):
        self.task = task
        space_table = {k: v for k, v in options.items() if k.isupper()}
        unknown = [k for k in options if not k.isupper() and k not in ("changes", "seed")]
        if unknown:
            raise ConfigError(f"proposer.sweep.{unknown[0]}: unknown option. Known: changes, "
                              "seed, and UPPER_CASE constant names with their ranges.")
        try:
            self.changes = int(options.get("changes", 1))
            self.seed = int(options.get("seed", 0))
        except (TypeError, ValueError):
            raise ConfigError("proposer.sweep: `changes` and `seed` must be whole numbers.") \
                from None
        if self.changes < 1:
            raise ConfigError("proposer.sweep.changes: at least 1 constant per experiment.")
        self.explicit = parse_space(space_table)
        self.file = self._target_file(task)
        self.space: dict[str, BaseDistribution] = {}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction: Direction = "minimize" if task.metric.direction == "minimize" else "maximize"
        self.study = optuna.create_study(
            direction=direction, sampler=optuna.samplers.TPESampler(seed=self.seed))
        self._open: dict[int, optuna.trial.Trial] = {}

    @staticmethod
    def _target_file(task: TaskSpec) -> str:
        files = [p.relative_to(task.root).as_posix() for pat in task.editable
                 for p in sorted(task.root.glob(pat)) if p.suffix == ".py"]
        if not files:
            raise ConfigError("proposer: the sweep proposer tunes constants in a Python file, "
                              "but no editable file ends in .py.")
        return files[0]

    def setup(self, history: Sequence[Experiment]) -> None:
        source = (self.task.root / self.file).read_text(encoding="utf-8")
        constants = find_constants(source)
        if self.explicit:
            missing = [n for n in self.explicit if n not in constants]
            if missing:
                raise ProposerError(f"proposer.sweep: {', '.join(missing)} not found as "
                                    f"module-level constants in {self.file}.")
            self.space = dict(self.explicit)
        else:
            self.space = {n: d for n, c in constants.items()
                          if (d := default_distribution(c.value)) is not None}
        if not self.space:
            raise ProposerError(f"sweep: no tunable UPPER_CASE constants in {self.file}. Add "
                                "some (e.g. LEARNING_RATE = 0.01) or list them in "
                                "[proposer.sweep].")
        # Resume: re-tell Optuna every earlier sweep trial from the ledger.
        for exp in history:
            params = exp.proposal.get("params") if exp.proposer == self.name else None
            if not params or not all(n in self.space for n in params):
                continue
            dists = {n: self.space[n] for n in params}
            try:
                for n, v in params.items():
                    dists[n]._contains(dists[n].to_internal_repr(v))
            except (ValueError, TypeError):
                continue
            ok = exp.metric is not None and exp.status in ("keep", "discard", "checks_failed")
            state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, value=exp.metric if ok else None,
                state=state))

    def propose(self, context: Context) -> Proposal:
        path = Path(context.workdir) / self.file
        source = path.read_text(encoding="utf-8")
        constants = find_constants(source)
        names = [n for n in self.space if n in constants]
        rng = random.Random(self.seed * 100003 + context.experiment_id)
        # A small int range can hand back the current value; ask again rather than
        # spend an experiment on a no-op (those asks are told as pruned).
        for _attempt in range(10):
            chosen = rng.sample(names, min(self.changes, len(names)))
            trial = self.study.ask({n: self.space[n] for n in chosen})
            params: dict[str, Any] = {}
            changes = []
            new_source = source
            for n in chosen:
                new = trial.params[n]
                if isinstance(new, float):
                    new = float(format_value(new))
                params[n] = new
                old = constants[n].value
                if new == old:
                    continue
                new_source = rewrite(new_source, find_constants(new_source)[n], new)
                changes.append(f"{n} {format_value(old)} -> {format_value(new)}")
            if changes:
                break
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            return Proposal(description="sweep: no new value found",
                            error="the sweep found no untried value in 10 asks")
        path.write_text(new_source, encoding="utf-8")
        self._open[context.experiment_id] = trial
        return Proposal(description="sweep: " + ", ".join(changes), meta={"params": params})

    def observe(self, experiment: Experiment) -> None:
        trial = self._open.pop(experiment.id, None)
        if trial is None:
            return
        ok = experiment.metric is not None and experiment.status in ("keep", "discard",
                                                                     "checks_failed")
        if ok:
            self.study.tell(trial, experiment.metric)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


@register("sweep")
def _factory(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> Proposer:
    return SweepProposer(task, options)
