"""Keep-or-discard policies: the one place that decides whether a change stays.

Call order (``decisions.protocol`` drives it for every candidate; the decision point in
``decisions.point`` serialises all calls, so a policy need not be thread-safe):

1. ``baseline_runs()`` once per tag: how many times the unmodified baseline is
   run before the first candidate (more runs give a noise estimate). Then
   ``observe(baseline_samples)`` and ``sensitivity(incumbent)``: a
   ``Sensitivity`` (or None) whose ``line(metric)`` the loop prints ("sigma =
   ..., smallest detectable gain = ...") and whose ``to_json()`` it stores for
   status and the report.
2. For each candidate, while it runs: if ``pruner()`` is not None, the loop
   passes ``pruner().watch(incumbent_commit, log).should_stop`` to ``measure``;
   a stop (``watch.decision``) is recorded as status ``pruned`` (a discard) and
   never reaches ``judge``. After every full-budget run (baseline, candidate,
   rerun, pair half) the loop calls ``pruner().observe_log(commit, log)``.
3. For each candidate that ran and produced a finite metric,
   ``judge(candidate, incumbent)``. A ``rerun`` verdict asks for more evidence:
   - when ``pairing()`` is false, the loop runs the same commit once more and
     calls ``judge`` again with one more sample, at most ``max_samples()``
     samples in all;
   - when ``pairing()`` is true, the loop instead runs pair ``k = 0, 1, ...``:
     the incumbent and the candidate back to back, with one fresh seed shared by
     both, in the order ``paired.pair_order(k)``, appends ``Pair(candidate_value,
     incumbent_value, seed)`` and calls ``judge_paired(candidate, incumbent,
     pairs)`` (``candidate.samples``: all the candidate's runs so far; its
     ``metrics``: the latest run's). It repeats while the answer is ``rerun``, at
     most ``max_pairs()`` pairs. On a discard the incumbent halves are appended
     to the incumbent's series (they are re-measurements).
   Either way the policy must answer keep or discard within its limits.
4. ``remeasure_incumbent(experiments_since_keep)``: when true, the loop re-runs
   the incumbent and appends the sample to its series (drift tracking).

Checks (the task's gate commands) run only for a ``keep`` verdict; a failing
check turns it into ``checks_failed``. Crashes never reach a policy.

Optionally, before running a candidate, the loop may call ``prescreen(diff)``:
a verdict there (e.g. "seed-only change") saves the run; ``judge`` applies the
same rule anyway, so a loop that never calls it is still correct.

Policies (``[decision] policy = NAME``; the package `autoresearch.decisions` registers both):

- ``noise-aware`` (default, in ``autoresearch.decisions.noise_aware``): keeps only what clears
  the measured noise, confirmed by reruns (paired with the incumbent), plus
  guardrails, the simplicity criterion and seed-only discards.
- ``strict``: Karpathy's rule exactly: keep iff the single run is strictly
  better than the incumbent's last value. Its options: ``guardrails`` (none by
  default), because a user who writes limits wants them enforced under any
  policy, and ``baseline_runs`` (1), which measures the noise its reasons show
  beside every gain without changing the rule. Seed and simplicity rules stay
  out so strict remains his rule.

Both accept the early-stopping keys (``prune``, ``prune_min_progress``,
``prune_margin``, ``prune_z``, ``screen``; see ``pruning``). Every policy
validates its options on construction: an unknown key or a bad value raises
``ConfigError`` naming ``decision.KEY``.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from autoresearch.decisions.guardrails import Guardrail, check_guardrails, parse_guardrails
from autoresearch.decisions.noise import NoisePool, Sensitivity, confidence
from autoresearch.decisions.options import (  # noqa: F401  (re-exported: the schema API)
    Option,
    above,
    at_least,
    validate_options,
)
from autoresearch.decisions.paired import Pair
from autoresearch.decisions.pruning import PRUNE_OPTIONS, Pruner, PruneRule
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
        rule = PruneRule.from_options(self.options)
        self._pruner = Pruner(rule, metric.name, metric.direction) if rule.active else None

    def baseline_runs(self) -> int:
        return 1

    def max_samples(self) -> int:
        return 1

    def pairing(self) -> bool:
        """True: confirm by interleaved (candidate, incumbent) pairs and ``judge_paired``."""
        return False

    def max_pairs(self) -> int:
        return 0

    def judge_paired(self, candidate: Candidate, incumbent: Incumbent,
                     pairs: Sequence[Pair]) -> Verdict:
        """Decide from interleaved pairs; only called when ``pairing()`` is true."""
        raise NotImplementedError(f"policy {self.name!r} does not judge pairs")

    def pruner(self) -> Pruner | None:
        """The early-stopping rule (``prune``/``screen`` in ``[decision]``), or None."""
        return self._pruner

    def sensitivity(self, incumbent: Incumbent) -> Sensitivity | None:
        """The noise and the smallest detectable gain, after the baseline (None: unknown)."""
        return None

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

    One run per candidate; no noise threshold, no seed or simplicity rules.
    Options: ``guardrails`` (default none), ``baseline_runs`` (default 1; more
    measure the noise) and the early-stopping keys. The rule never changes, but
    its reasons never give a one-run delta as "the gain" alone: the noise sits
    beside it, and a gain within one standard error of a one-run comparison is
    labelled "within noise" (or "noise not measured" when there is no estimate).
    """

    name = "strict"
    OPTIONS = {"guardrails": GUARDRAILS_OPTION,
               "baseline_runs": Option(int, 1, "runs of the unmodified baseline; more than "
                                       "one measures the noise shown beside each gain",
                                       at_least(1)),
               **PRUNE_OPTIONS}

    def __init__(self, metric: MetricSpec, options: Mapping[str, Any] | None = None):
        super().__init__(metric, options)
        self.pool = NoisePool()

    def baseline_runs(self) -> int:
        return int(self.options["baseline_runs"])

    def observe(self, samples: Sequence[float]) -> None:
        self.pool.observe(samples)

    def sensitivity(self, incumbent: Incumbent) -> Sensitivity | None:
        self.pool.observe(incumbent.samples)
        noise = self.pool.estimate()
        return Sensitivity(noise.sigma, noise.source, noise.pairs, None,
                           statistics.fmean(incumbent.samples), None, 0.8, 1, 1, False)

    def judge(self, candidate: Candidate, incumbent: Incumbent) -> Verdict:
        self.pool.observe(incumbent.samples)
        self.pool.observe(candidate.samples)
        sigma = self.pool.estimate().sigma
        value, best = candidate.samples[-1], incumbent.samples[-1]
        effect = self.improvement(best, value)
        se = None if sigma is None else sigma * math.sqrt(2.0)  # one run against one run
        within = None if se is None else abs(effect) <= se
        evidence: dict[str, Any] = {
            "policy": self.name, "samples": list(candidate.samples),
            "incumbent_samples": list(incumbent.samples),
            "candidate": value, "incumbent": best, "delta": value - best,
            "effect": effect, "sigma": sigma, "se": se, "within_noise": within,
            "threshold": 0.0, "confidence": confidence(effect, se),
        }
        if self.guardrails:
            evidence["guardrails"] = [g.to_json(candidate.metrics, incumbent.baseline_metrics)
                                      for g in self.guardrails]
            broken = self.broken_guardrails(candidate, incumbent)
            if broken:
                return Verdict("discard", "; ".join(broken), {**evidence, "rule": "guardrail"})
        if se is None:
            noise = "one run each, noise not measured"
        else:
            noise = (f"one run each, noise sigma {sigma:.3g}, SE {se:.3g}: "
                     f"{'within noise' if within else 'beyond 1 SE'}")
        if self.metric.better(value, best):
            return Verdict("keep", f"{value:.6f} beats {best:.6f} by {abs(value - best):.3g} "
                           f"({noise})", evidence)
        return Verdict("discard", f"{value:.6f} does not beat {best:.6f} ({noise})", evidence)


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

