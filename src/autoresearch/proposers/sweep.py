"""`sweep`: an offline proposer that tunes module-level constants with Optuna ask/tell.

It finds tunable constants in the editable file by AST: module-level
``UPPER_CASE = literal`` assignments of numbers, bools (and strings, when
choices are given). Each experiment asks Optuna for new values and rewrites only
those literals in place, so the diff reads ``MATRIX_LR = 0.04 -> 0.05``. The
outcome is told back to the study.

The sweep travels. With TPE (the default sampler) each experiment searches a
trust region centred on the *incumbent's* value of each constant, read from the
file the loop hands over, so the window follows every keep. Its width grows
after a keep and shrinks after ``patience`` misses in a row; explicit bounds
cap it (see `sweep_space`). The study is seeded with the incumbent itself as a
measured point at the centre, and TPE's random start-up is short (3 trials).
With ``sampler = "cmaes"`` (Optuna's CmaEsSampler, continuous constants only)
every experiment changes all numeric constants jointly inside the fixed cap,
and CMA-ES's own mean and step size do the travelling.

What it does not do: the trials it tells Optuna are measured on top of
whatever incumbent was current then (a kept change shifts the landscape), and
with ``changes = 1`` it learns nothing about interactions. The ledger keeps
every point for a proper analysis. Options: see `SweepOptions` and the README.
"""

from __future__ import annotations

import random
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import Context, Proposal, Proposer, ProposerError
from autoresearch.proposers.options import HARNESS_KEYS
from autoresearch.proposers.sweep_space import (
    Constant,
    contains,
    default_cap,
    dist_from_json,
    dist_to_json,
    find_constants,
    format_value,
    parse_space,
    region,
    rewrite,
    widened,
)
from autoresearch.task import ConfigError, TaskSpec

__all__ = ["Constant", "SweepOptions", "SweepProposer", "Suggestion", "find_constants",
           "rewrite"]

Direction = typing.Literal["minimize", "maximize"]
# Outcomes told to Optuna as a measured value; other statuses are told as failed.
MEASURED = ("keep", "discard", "checks_failed")
# Outcomes that say nothing about the constants (the harness refused or lost the run).
NEUTRAL = ("duplicate", "interrupted", "stale", "remeasure")


def _number(key: str, value: Any, *, integer: bool = False, low: float | None = None,
            high: float | None = None) -> float:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"proposer.sweep.{key}: expected {what}, got {value!r}")
    number = float(typing.cast(float, value))
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
        raise ConfigError(f"proposer.sweep.{key}: must be {bounds}, got {value!r}")
    return number


@dataclass(frozen=True)
class SweepOptions:
    """The lowercase keys of ``[proposer.sweep]``; UPPER_CASE keys are the space."""

    changes: int = 1  # constants changed per experiment (TPE; CMA-ES changes all)
    seed: int = 0
    sampler: str = "tpe"  # "tpe" | "cmaes"
    file: str | None = None  # which editable .py file holds the constants
    travel: bool = True  # re-centre on the incumbent; False = the old fixed window
    startup: int = 3  # TPE's random trials before it models
    radius: float = 4.0  # first window: centre / radius .. centre * radius
    grow: float = 2.0  # window scale multiplier after a keep
    shrink: float = 0.5  # ... after `patience` misses in a row
    patience: int = 3
    space: dict[str, Any] = field(default_factory=dict)

    KEYS: typing.ClassVar[tuple[str, ...]] = (
        "changes", "seed", "sampler", "file", "travel", "startup", "radius", "grow", "shrink",
        "patience")

    @classmethod
    def parse(cls, options: dict[str, Any]) -> SweepOptions:
        for key in options:
            if not key.isupper() and key not in cls.KEYS and key not in HARNESS_KEYS:
                raise ConfigError(f"proposer.sweep.{key}: unknown option. Known: "
                                  f"{', '.join(cls.KEYS)}, and UPPER_CASE constant names with "
                                  "their ranges.")
        sampler = options.get("sampler", "tpe")
        if sampler not in ("tpe", "cmaes"):
            raise ConfigError(f'proposer.sweep.sampler: expected "tpe" or "cmaes", got '
                              f"{sampler!r}")
        file = options.get("file")
        if file is not None and (not isinstance(file, str) or not file.endswith(".py")):
            raise ConfigError(f'proposer.sweep.file: expected a Python file path such as '
                              f'"train.py", got {file!r}')
        travel = options.get("travel", True)
        if not isinstance(travel, bool):
            raise ConfigError(f"proposer.sweep.travel: expected true or false, got {travel!r}")
        o = options
        return cls(
            changes=int(_number("changes", o.get("changes", 1), integer=True, low=1)),
            seed=int(_number("seed", o.get("seed", 0), integer=True)),
            sampler=sampler, file=file, travel=travel,
            startup=int(_number("startup", o.get("startup", 3), integer=True, low=0)),
            radius=_number("radius", o.get("radius", 4.0), low=1.01),
            grow=_number("grow", o.get("grow", 2.0), low=1.0),
            shrink=_number("shrink", o.get("shrink", 0.5), low=0.01, high=1.0),
            patience=int(_number("patience", o.get("patience", 3), integer=True, low=1)),
            space={k: v for k, v in options.items() if k.isupper()},
        )


@dataclass(frozen=True)
class Suggestion:
    """What the optimizer would try next; not yet written anywhere."""

    trial: optuna.trial.Trial
    params: dict[str, Any]
    source: str  # the file's new text
    changes: tuple[str, ...]  # "NAME old -> new"
    regions: dict[str, BaseDistribution]

    @property
    def description(self) -> str:
        return "sweep: " + ", ".join(self.changes)

    def meta(self, sampler: str) -> dict[str, Any]:
        return {"params": self.params, "sampler": sampler,
                "region": {n: b for n, d in self.regions.items()
                           if (b := dist_to_json(d)) is not None}}


class SweepProposer(Proposer):
    ahead = False  # Optuna answers at once: asking ahead would only tell it later
    name = "sweep"
    MIN_SCALE, MAX_SCALE = 1 / 8, 4.0

    def __init__(self, task: TaskSpec, options: dict[str, Any]):
        self.task = task
        self.opts = SweepOptions.parse(options)
        self.explicit = parse_space(self.opts.space)
        self.file = self._target_file(task, self.opts.file)
        self.caps: dict[str, BaseDistribution] = {}
        self.scale, self.misses = 1.0, 0
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction: Direction = "minimize" if task.metric.direction == "minimize" else "maximize"
        sampler: optuna.samplers.BaseSampler
        if self.opts.sampler == "cmaes":
            sampler = optuna.samplers.CmaEsSampler(
                seed=self.opts.seed, n_startup_trials=0, warn_independent_sampling=False)
        else:
            sampler = optuna.samplers.TPESampler(seed=self.opts.seed,
                                                 n_startup_trials=self.opts.startup)
        self.study = optuna.create_study(direction=direction, sampler=sampler)
        self._open: dict[int, optuna.trial.Trial] = {}
        self.owners = {self.name}  # ledger `proposer` values whose params belong to this study

    @staticmethod
    def _target_file(task: TaskSpec, chosen: str | None) -> str:
        files = [p.relative_to(task.root).as_posix() for pat in task.editable
                 for p in sorted(task.root.glob(pat)) if p.suffix == ".py"]
        if chosen is not None:
            if chosen not in files:
                raise ConfigError(f"proposer.sweep.file: {chosen!r} is not an editable Python "
                                  f"file of this task. Editable .py files: "
                                  f"{', '.join(files) or '(none)'}.")
            return chosen
        if not files:
            raise ConfigError("proposer: the sweep proposer tunes constants in a Python file, "
                              "but no editable file ends in .py.")
        return files[0]

    # -- state -----------------------------------------------------------------------------

    def setup(self, history: Sequence[Experiment]) -> None:
        source = (self.task.root / self.file).read_text(encoding="utf-8")
        constants = find_constants(source)
        if self.explicit:
            missing = [n for n in self.explicit if n not in constants]
            if missing:
                raise ProposerError(f"proposer.sweep: {', '.join(missing)} not found as "
                                    f"module-level constants in {self.file}.")
            caps = dict(self.explicit)
        else:
            caps = {n: d for n, c in constants.items() if (d := default_cap(c.value)) is not None}
            if not self.opts.travel:  # the old behaviour: one fixed window around the start
                caps = {n: region(d, constants[n].value, 1.0, self.opts.radius)
                        for n, d in caps.items()}
        if self.opts.sampler == "cmaes":
            caps = {n: d for n, d in caps.items() if not isinstance(d, CategoricalDistribution)}
        self.caps = caps
        if not self.caps:
            what = "numeric " if self.opts.sampler == "cmaes" else ""
            raise ProposerError(f"sweep: no tunable {what}UPPER_CASE constants in {self.file}. "
                                "Add some (e.g. LEARNING_RATE = 0.01) or list them in "
                                "[proposer.sweep].")
        # Resume: re-tell Optuna every earlier trial and replay the trust region's moves.
        for exp in history:
            meta = exp.proposal
            params = meta.get("params") if exp.proposer in self.owners else None
            if not params or not all(n in self.caps for n in params):
                continue
            self.note_outcome(exp.status)
            if self.opts.sampler == "cmaes":
                # CMA-ES works on the intersection of all trials' spaces: same caps or nothing.
                if set(params) != set(self.caps) or not all(
                        contains(self.caps[n], v) for n, v in params.items()):
                    continue
                dists = dict(self.caps)
            else:
                regions = meta.get("region")
                regions = regions if isinstance(regions, dict) else {}
                dists = {n: widened(dist_from_json(self.caps[n], regions.get(n)), v)
                         for n, v in params.items()}
            self.tell_point(params, dists, exp)
        self._seed_centre(constants, history)

    def tell_point(self, params: dict[str, Any], dists: dict[str, BaseDistribution],
                   exp: Experiment) -> None:
        """Tell the study a point it did not ask for (a past row, a hybrid model's guess)."""
        ok = exp.metric is not None and exp.status in MEASURED
        try:
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, value=exp.metric if ok else None,
                state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
        except ValueError:
            pass  # a row from an older space (other bounds or kinds): skip, never stop the run

    def _seed_centre(self, constants: dict[str, Constant], history: Sequence[Experiment]) -> None:
        """Tell the incumbent itself as the first point: TPE then models from experiment 1."""
        kept = [e for e in history if e.status == "keep" and e.metric is not None]
        if not kept:
            return
        params = {n: constants[n].value for n in self.caps if n in constants}
        dists = {n: d for n, d in self.caps.items() if n in params}
        if len(params) < len(self.caps) or not all(
                d._contains(d.to_internal_repr(params[n])) for n, d in dists.items()):
            return  # the incumbent lies outside the caps: nothing honest to seed with
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=kept[-1].metric))

    def note_outcome(self, status: str) -> None:
        """Grow the trust region after a keep; shrink it after `patience` misses in a row."""
        if status in NEUTRAL:
            return
        if status == "keep":
            self.scale, self.misses = min(self.scale * self.opts.grow, self.MAX_SCALE), 0
            return
        self.misses += 1
        if self.misses >= self.opts.patience:
            self.scale, self.misses = max(self.scale * self.opts.shrink, self.MIN_SCALE), 0

    def regions(self, constants: dict[str, Constant]) -> dict[str, BaseDistribution]:
        """This experiment's search window per constant, centred on the incumbent."""
        if self.opts.sampler == "cmaes" or not self.opts.travel:
            return dict(self.caps)
        return {n: region(d, constants[n].value, self.scale, self.opts.radius)
                for n, d in self.caps.items() if n in constants}

    # -- ask / tell ------------------------------------------------------------------------

    def suggest(self, context: Context) -> Suggestion | None:
        """Ask Optuna for the next point; None when 10 asks only repeat the incumbent."""
        source = (Path(context.workdir) / self.file).read_text(encoding="utf-8")
        constants = find_constants(source)
        windows = self.regions(constants)
        names = [n for n in self.caps if n in constants]
        rng = random.Random(self.opts.seed * 100003 + context.experiment_id)
        # A small int range can hand back the current value; ask again rather than
        # spend an experiment on a no-op (those asks are told as pruned).
        for _attempt in range(10):
            chosen = (names if self.opts.sampler == "cmaes"
                      else rng.sample(names, min(self.opts.changes, len(names))))
            trial = self.study.ask({n: windows[n] for n in chosen})
            params: dict[str, Any] = {}
            changes = []
            new_source = source
            for n in chosen:
                new = trial.params[n]
                if isinstance(new, float):
                    new = float(format_value(new))
                params[n] = new
                old = constants[n].value
                if new == old and isinstance(new, bool) == isinstance(old, bool):
                    continue
                new_source = rewrite(new_source, find_constants(new_source)[n], new)
                changes.append(f"{n} {format_value(old)} -> {format_value(new)}")
            if changes:
                return Suggestion(trial, params, new_source, tuple(changes),
                                  {n: windows[n] for n in chosen})
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return None

    def adopt(self, experiment_id: int, suggestion: Suggestion) -> None:
        """The suggestion will be run as `experiment_id`: its outcome goes to its trial."""
        self._open[experiment_id] = suggestion.trial

    def drop(self, suggestion: Suggestion) -> None:
        """The suggestion will not be run (e.g. the hybrid's LLM chose a code change)."""
        self.study.tell(suggestion.trial, state=optuna.trial.TrialState.FAIL)

    def propose(self, context: Context) -> Proposal:
        suggestion = self.suggest(context)
        if suggestion is None:
            return Proposal(description="sweep: no new value found",
                            error="the sweep found no untried value in 10 asks")
        (Path(context.workdir) / self.file).write_text(suggestion.source, encoding="utf-8")
        self.adopt(context.experiment_id, suggestion)
        return Proposal(description=suggestion.description, meta=suggestion.meta(
            self.opts.sampler))

    def observe(self, experiment: Experiment) -> None:
        trial = self._open.pop(experiment.id, None)
        if trial is None:
            return
        self.note_outcome(experiment.status)
        if experiment.metric is not None and experiment.status in MEASURED:
            self.study.tell(trial, experiment.metric)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


@register("sweep")
def _factory(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> Proposer:
    return SweepProposer(task, options)
