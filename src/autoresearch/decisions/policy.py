"""Keep-or-discard policies: the one place that decides whether a change stays.

Call order (the loop in ``autoresearch.loop`` owns it):

1. ``baseline_runs()`` once per tag: how many times the unmodified baseline is
   run before the first candidate (more runs give a noise estimate).
2. For each candidate that ran and produced a finite metric,
   ``judge(candidate, incumbent)``. A ``rerun`` verdict makes the loop run the
   same commit once more and call ``judge`` again with one more sample, at most
   ``max_samples()`` samples in all; then it must answer keep or discard.
3. ``remeasure_incumbent(experiments_since_keep)``: when true, the loop re-runs
   the incumbent and appends the sample to its series (drift tracking).

Checks (the task's gate commands) run only for a ``keep`` verdict; a failing
check turns it into ``checks_failed``. Crashes never reach a policy.

Optionally, before running a candidate, the loop may call ``prescreen(diff)``:
a verdict there (e.g. "seed-only change") saves the run; ``judge`` applies the
same rule anyway, so a loop that never calls it is still correct.

Policies (``[decision] policy = NAME``; the package `autoresearch.decisions` registers both):

- ``noise-aware`` (default, in ``autoresearch.decisions.noise_aware``): keeps only what clears
  the measured noise, confirmed by reruns, plus guardrails, the simplicity
  criterion and seed-only discards.
- ``strict``: Karpathy's rule exactly: keep iff the single run is strictly
  better than the incumbent's last value. It takes one option, ``guardrails``
  (none by default), because a user who writes limits wants them enforced under
  any policy; seed and simplicity rules stay out so strict remains his rule.

Every policy validates its options on construction: an unknown key or a bad
value raises ``ConfigError`` naming ``decision.KEY``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from autoresearch.decisions.guardrails import Guardrail, check_guardrails, parse_guardrails
from autoresearch.plugins import load_plugin, plugins
from autoresearch.task import ConfigError, MetricSpec, TaskSpec


@dataclass(frozen=True)
class Candidate:
    samples: tuple[float, ...]  # metric values of this commit, one per run
    metrics: Mapping[str, float]  # secondary metrics of the latest run
    lines_delta: int = 0  # non-blank, non-comment lines added minus removed (editable files)
    diff: str = ""  # unified diff of the editable files against the incumbent


@dataclass(frozen=True)
class Incumbent:
    samples: tuple[float, ...]  # metric values of the incumbent commit (its repeats)
    metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]  # secondary metrics of the tag's baseline


@dataclass(frozen=True)
class Verdict:
    status: str  # "keep" | "discard" | "rerun"
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One ``[decision]`` key a policy accepts: its type, default and a value check.

    ``kind`` is ``int``, ``float``, ``bool`` or ``list`` (a list of strings).
    ``check`` returns an error message for a bad value, or None.
    """

    kind: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false",
               list: "a list of strings"}


def _kind_ok(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # bool is an int subclass; `z = true` is a typo, not 1.0
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _coerce(key: str, opt: Option, value: Any) -> Any:
    if not _kind_ok(opt.kind, value):
        raise ConfigError(f"decision.{key}: expected {_KIND_NAMES[opt.kind]}, got {value!r}. "
                          f"({opt.help})")
    value = float(value) if opt.kind is float else value
    if opt.check is not None and (problem := opt.check(value)) is not None:
        raise ConfigError(f"decision.{key}: {problem}, got {value!r}. ({opt.help})")
    return value


def validate_options(policy: str, schema: Mapping[str, Option],
                     options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against ``schema``; return them with defaults filled in."""
    for key in options:
        if key not in schema:
            known = ", ".join(sorted(["policy", *schema]))
            raise ConfigError(f"decision.{key}: unknown option for policy {policy!r}. "
                              f"Known keys: {known}.")
    return {key: _coerce(key, opt, options[key]) if key in options else opt.default
            for key, opt in schema.items()}


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def above(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v > low else f"must be above {low:g}"


GUARDRAILS_OPTION = Option(list, [], "limits on secondary metrics, e.g. "
                           "[\"peak_vram_mb <= 1.2 * baseline\", \"num_params_M <= 50\"]")


class Policy(ABC):
    name: str = "policy"
    # The [decision] keys this policy accepts (besides `policy`). Subclasses extend it.
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, metric: MetricSpec, options: Mapping[str, Any] | None = None):
        self.metric = metric
        self.options = validate_options(self.name, self.OPTIONS, dict(options or {}))
        self.guardrails: tuple[Guardrail, ...] = parse_guardrails(
            self.options.get("guardrails", []))

    def baseline_runs(self) -> int:
        return 1

    def max_samples(self) -> int:
        return 1

    def remeasure_incumbent(self, experiments_since_keep: int) -> bool:
        return False

    def prescreen(self, diff: str) -> Verdict | None:
        """A verdict from the diff alone, before any run (None: run it)."""
        return None

    def observe(self, samples: Sequence[float]) -> None:  # noqa: B027 - optional hook
        """Learn from a past series of repeated runs of one commit (called on resume)."""

    def improvement(self, incumbent: float, candidate: float) -> float:
        """How much better ``candidate`` is, in metric units; positive means better."""
        return incumbent - candidate if self.metric.direction == "minimize" \
            else candidate - incumbent

    def broken_guardrails(self, candidate: Candidate, incumbent: Incumbent) -> list[str]:
        return check_guardrails(self.guardrails, candidate.metrics, incumbent.baseline_metrics)

    @abstractmethod
    def judge(self, candidate: Candidate, incumbent: Incumbent) -> Verdict:
        """Decide keep, discard, or ask for another sample."""


class StrictPolicy(Policy):
    """Karpathy's rule: keep iff strictly better than the incumbent's last value.

    One run per candidate and one baseline run; no noise model, no seed or
    simplicity rules. Only ``guardrails`` (default none) may be configured.
    """

    name = "strict"
    OPTIONS = {"guardrails": GUARDRAILS_OPTION}

    def judge(self, candidate: Candidate, incumbent: Incumbent) -> Verdict:
        value, best = candidate.samples[-1], incumbent.samples[-1]
        effect = self.improvement(best, value)
        evidence: dict[str, Any] = {
            "policy": self.name, "samples": list(candidate.samples),
            "incumbent_samples": list(incumbent.samples),
            "candidate": value, "incumbent": best, "delta": value - best,
            "effect": effect, "sigma": None, "threshold": 0.0, "confidence": None,
        }
        if self.guardrails:
            evidence["guardrails"] = [g.to_json(candidate.metrics, incumbent.baseline_metrics)
                                      for g in self.guardrails]
            broken = self.broken_guardrails(candidate, incumbent)
            if broken:
                return Verdict("discard", "; ".join(broken), {**evidence, "rule": "guardrail"})
        if self.metric.better(value, best):
            return Verdict("keep", f"{value:.6f} beats {best:.6f}", evidence)
        return Verdict("discard", f"{value:.6f} does not beat {best:.6f}", evidence)


POLICIES: dict[str, type[Policy]] = {"strict": StrictPolicy}


def register_policy(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy selectable as ``[decision] policy = NAME``."""
    POLICIES[cls.name] = cls
    return cls


DEFAULT_POLICY = "noise-aware"
# Third-party policies: entry points in this group, name -> a Policy subclass (or a module
# that applies @register_policy); imported only when `[decision] policy` names one.
PLUGIN_GROUP = "autoresearch.policies"


def available_policies() -> list[str]:
    return sorted({*POLICIES, DEFAULT_POLICY, *plugins(PLUGIN_GROUP)})


def make_policy(task: TaskSpec) -> Policy:
    """Build the policy named by ``[decision] policy`` with the table's other keys as options."""
    options = dict(task.decision)
    name = options.pop("policy", DEFAULT_POLICY)
    if name not in POLICIES and name in (found := plugins(PLUGIN_GROUP)):
        obj = load_plugin(found[name], "policy")  # a Policy subclass, or a module registering
        if name not in POLICIES and isinstance(obj, type) and issubclass(obj, Policy):
            POLICIES[name] = obj
    if name not in POLICIES:
        raise ConfigError(f"decision.policy: unknown policy {name!r}. "
                          f"Choose one of: {', '.join(available_policies())}.")
    return POLICIES[name](task.metric, options)

