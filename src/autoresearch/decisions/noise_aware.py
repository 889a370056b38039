"""The noise-aware policy: keep only what clears the measured run-to-run noise.

Karpathy's rule keeps any run that beats the incumbent, and most of his kept
deltas were the size of the noise (one kept "idea" was a seed change). This
policy measures the noise and asks a candidate to clear it, confirmed by reruns.

**Noise estimate.** Every series of repeated runs of one commit (the baseline
repeats, the incumbent's re-measurements, a candidate's confirmation reruns) is
pooled. Within each series every pair of runs gives ``|x_i - x_j|``, which for
Gaussian noise is ``|N(0, 2 sigma^2)|``; the estimate is the MAD-style

    sigma = 1.4826 * median(|x_i - x_j|) / sqrt(2)

over all pairs of all series. Pairs rather than residuals from each series'
own median because the latter is ~30% low for series of two or three runs, and
an underestimated sigma is exactly what produces false keeps. The median makes
one wild run (a thermal hiccup) unable to move the estimate much. With no pair
at all (one baseline run, no reruns yet) the noise is unknown: the policy asks
for a rerun instead of guessing, unless ``noise_floor`` supplies a prior.
``noise_floor`` is also a lower bound: sigma = max(estimate, noise_floor).

The pool lives in the policy object, so it grows over a night: series judged
earlier keep informing later decisions. A series that extends an earlier one
(the same commit rerun, the incumbent re-measured) replaces it, so no run is
counted twice. A resumed loop starts with the incumbent's series only.

**Decision.** ``effect`` is the candidate mean minus the incumbent mean (the
mean over all its repeats, never its best draw), signed so positive is better;
``se = sigma * sqrt(1/n_candidate + 1/n_incumbent)``. The keep threshold is
``max(z' * se, min_delta)`` where ``z'`` is ``z`` widened twice: to a Student-t
quantile for the noise estimate's degrees of freedom (a sigma from five runs is
often low by chance), and, at an early look (fewer than ``max_samples`` runs),
by ``sqrt(max_samples / n)`` (an O'Brien-Fleming boundary: only a clear win is
kept early, so looking after every rerun does not multiply the false keeps).
Per judged sample:

1. seed-only diff -> discard; broken guardrail -> discard.
2. Fewer than ``1 + confirm_runs`` samples: rerun while ``effect > screen_z * se``
   (or, for a change that removes code, while it is within ``simplicity_z * se``
   of the incumbent); otherwise discard. With the default one confirmation, a
   single run is never enough to keep.
3. Then: ``effect > threshold`` keeps (an improvement), unless the change adds
   more than ``simplicity_lines`` code lines for less than ``simplicity_gain``
   (default: twice the threshold) -> discard. A change that removes code and is
   within ``simplicity_z * se`` of the incumbent is kept (a simplification).
   Otherwise rerun while ``effect > screen_z * se`` and under ``max_samples``;
   else discard.

The defaults (5 baseline runs, z 1.8, up to 6 runs, screen 0.25) are the
cheapest found by ``benchmarks/decisions.py`` that keep at most 5% of no-op
changes and at least 80% of true 2-sigma improvements on a stable machine.

**Pairing** (``pairing = true``, the default): the first run is screened as
above, but against the incumbent's latest ``baseline_runs`` runs (the machine as
it is now); the confirmation is then interleaved pairs with the incumbent (see
``paired``), judged by ``judge_paired`` on the paired differences with the same
ladder: ``effect`` is their mean, ``se = sigma_d / sqrt(pairs)`` with ``sigma_d``
pooled over all candidates' difference series and combined with the prior
``sqrt(2) sigma``, the same Student-t widening from ``paired_z`` (1.2), and
O'Brien-Fleming looks up to ``max_pairs`` (8). ``confirm_runs`` is then the pairs
needed before a keep (at least one). Why on by default (``benchmarks/decisions.py``):
on a machine whose speed drifts, unpaired confirmation keeps about 11% of no-op
changes and pairs about 3.5%. ``paired_z`` and ``max_pairs`` are the cheapest found
that keep at most 5% of no-op changes and at least 80% of 2-sigma gains on a stable
machine (3.6% and 80.7% at 1500 trials; 71% of 2-sigma gains on the drifting one).

**Sensitivity.** ``sensitivity(incumbent)`` reports sigma and the smallest gain
kept with 80% power at the final look (``noise.mde``), which the loop prints
after the baseline.

``confidence`` in the evidence is ``Phi(effect / se)``: under the Gaussian noise
model, the probability that the candidate is truly better than the incumbent.

Options (``[decision]``; defaults in ``NoiseAwarePolicy.OPTIONS``): baseline_runs,
z, min_delta, confirm_runs, max_samples, screen_z, remeasure_every, noise_floor,
guardrails, simplicity_lines, simplicity_gain, simplicity_z, discard_seed_only,
pairing, max_pairs, paired_z, and the early-stopping keys of ``pruning``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autoresearch.decisions.noise import (  # noqa: F401  (re-exported: older imports)
    NORMAL,
    PAIR_SCALE,
    SHAMOS_EFFICIENCY,
    NoiseEstimate,
    NoisePool,
    Sensitivity,
    confidence,
    critical_z,
    in_se,
    mde,
    paired_mde,
    pairwise_sigma,
    t_quantile,
)
from autoresearch.decisions.paired import Pair, PairedNoise, paired_stats
from autoresearch.decisions.policy import (
    GUARDRAILS_OPTION,
    Candidate,
    Incumbent,
    Option,
    Policy,
    Verdict,
    above,
    at_least,
    register_policy,
)
from autoresearch.decisions.pruning import PRUNE_OPTIONS
from autoresearch.decisions.simplicity import is_seed_only
from autoresearch.task import ConfigError, MetricSpec


def _nonneg(v: Any) -> str | None:
    return None if v >= 0 else "must not be negative"


VerdictFn = Callable[[str, str, str], Verdict]


@register_policy
class NoiseAwarePolicy(Policy):
    """Keep only confirmed improvements that clear the measured noise (the default)."""

    name = "noise-aware"
    OPTIONS = {
        "baseline_runs": Option(int, 5, "runs of the unmodified baseline that seed the "
                                "noise estimate", at_least(1)),
        "z": Option(float, 1.8, "keep threshold in standard errors of the difference of "
                    "means", above(0)),
        "min_delta": Option(float, 0.0, "smallest improvement worth keeping, in metric "
                            "units", _nonneg),
        "confirm_runs": Option(int, 1, "reruns (with pairing: pairs) a candidate needs "
                               "before it can be kept", at_least(0)),
        "max_samples": Option(int, 6, "most runs of one candidate (without pairing)",
                              at_least(1)),
        "screen_z": Option(float, 0.25, "a candidate is rerun only while its effect exceeds "
                           "this many standard errors"),
        "remeasure_every": Option(int, 5, "re-run the incumbent every N experiments without a "
                                  "keep (0: never)", _nonneg),
        "noise_floor": Option(float, 0.0, "prior and lower bound for the noise sigma, in "
                              "metric units", _nonneg),
        "guardrails": GUARDRAILS_OPTION,
        "simplicity_lines": Option(int, 20, "a change adding more code lines than this must "
                                   "gain at least simplicity_gain", _nonneg),
        "simplicity_gain": Option(float, -1.0, "gain that pays for more than simplicity_lines "
                                  "lines (default: twice the keep threshold)"),
        "simplicity_z": Option(float, 1.0, "a change that removes code is kept when no worse "
                               "than this many standard errors", _nonneg),
        "discard_seed_only": Option(bool, True, "discard a diff that only changes seeds"),
        "pairing": Option(bool, True, "confirm a candidate by interleaved pairs with the "
                          "incumbent (shared seeds), so machine drift cancels"),
        "max_pairs": Option(int, 8, "most confirmation pairs of one candidate (each pair is "
                            "two runs)", at_least(1)),
        "paired_z": Option(float, 1.2, "keep threshold of a paired confirmation, in standard "
                           "errors of the mean paired difference (paired differences carry "
                           "no drift, so fewer false keeps at a lower z)", above(0)),
        **PRUNE_OPTIONS,
    }

    def __init__(self, metric: MetricSpec, options: Mapping[str, Any] | None = None):
        super().__init__(metric, options)
        o = self.options
        if o["max_samples"] < 1 + o["confirm_runs"]:
            raise ConfigError(f"decision.max_samples: must be at least 1 + confirm_runs = "
                              f"{1 + o['confirm_runs']}, got {o['max_samples']}.")
        if o["pairing"] and o["max_pairs"] < o["confirm_runs"]:
            raise ConfigError(f"decision.max_pairs: must be at least confirm_runs = "
                              f"{o['confirm_runs']}, got {o['max_pairs']}.")
        if o["baseline_runs"] < 2 and o["max_samples"] < 2 and o["noise_floor"] <= 0:
            raise ConfigError("decision.baseline_runs: with one baseline run, max_samples 1 and "
                              "no noise_floor the noise can never be measured. Use "
                              "baseline_runs >= 2, or set noise_floor, or use policy = 'strict'.")
        self.pool = NoisePool()
        self.paired_noise = PairedNoise()

    def baseline_runs(self) -> int:
        return int(self.options["baseline_runs"])

    def max_samples(self) -> int:
        return int(self.options["max_samples"])

    def pairing(self) -> bool:
        return bool(self.options["pairing"])

    def max_pairs(self) -> int:
        return int(self.options["max_pairs"]) if self.pairing() else 0

    def remeasure_incumbent(self, experiments_since_keep: int) -> bool:
        every = int(self.options["remeasure_every"])
        return every > 0 and experiments_since_keep > 0 and experiments_since_keep % every == 0

    def critical_z(self, noise: NoiseEstimate, paired: bool = False) -> float:
        """``z`` (``paired_z`` for pairs) widened to a Student-t quantile for the noise
        estimate's degrees of freedom."""
        return critical_z(float(self.options["paired_z" if paired else "z"]), noise)

    def observe(self, samples: Sequence[float]) -> None:
        """Add a series of repeated runs of one commit to the noise pool (e.g. on resume)."""
        self.pool.observe(samples)

    def sensitivity(self, incumbent: Incumbent) -> Sensitivity:
        """Sigma and the smallest gain a fully confirmed candidate clears with 80% power."""
        o = self.options
        self.pool.observe(incumbent.samples)
        noise = self.pool.estimate(o["noise_floor"])
        reference = statistics.fmean(incumbent.samples)
        if self.pairing():
            diff_noise = self.paired_noise.estimate(noise)
            zc = self.critical_z(diff_noise, paired=True)
            found = None if diff_noise.sigma is None else \
                paired_mde(diff_noise.sigma, o["max_pairs"], z=zc)
            n_c, n_i = o["max_pairs"], 0
        else:
            zc = self.critical_z(noise)
            n_c, n_i = o["max_samples"], len(incumbent.samples)
            found = None if noise.sigma is None else mde(noise.sigma, n_c, n_i, z=zc)
        if found is not None:
            found = max(found, o["min_delta"])
        return Sensitivity(noise.sigma, noise.source, noise.pairs, found, reference,
                           NORMAL.cdf(zc), 0.8, n_c, n_i, self.pairing())

    def prescreen(self, diff: str) -> Verdict | None:
        if self.options["discard_seed_only"] and is_seed_only(diff):
            return Verdict("discard", _SEED_REASON, {"policy": self.name, "rule": "seed-only"})
        return None

    def _rules(self, candidate: Candidate, incumbent: Incumbent,
               verdict: VerdictFn) -> Verdict | None:
        if self.options["discard_seed_only"] and is_seed_only(candidate.diff):
            return verdict("discard", "seed-only", _SEED_REASON)
        broken = self.broken_guardrails(candidate, incumbent)
        if broken:
            return verdict("discard", "guardrail", "; ".join(broken))
        return None

    def _evidence(self, candidate: Candidate, incumbent: Incumbent) -> dict[str, Any]:
        ev: dict[str, Any] = {"policy": self.name, "samples": list(candidate.samples),
                              "incumbent_samples": list(incumbent.samples),
                              "lines_delta": candidate.lines_delta}
        if self.guardrails:
            ev["guardrails"] = [g.to_json(candidate.metrics, incumbent.baseline_metrics)
                                for g in self.guardrails]
        return ev

    def judge(self, candidate: Candidate, incumbent: Incumbent) -> Verdict:
        o = self.options
        self.pool.observe(incumbent.samples)
        self.pool.observe(candidate.samples)
        noise = self.pool.estimate(o["noise_floor"])
        inc_samples = incumbent.samples
        if self.pairing() and len(candidate.samples) == 1:
            # The screen before pairs: against the incumbent's latest runs, the machine as
            # it is now, so drift since the baseline does not decide who gets confirmed.
            inc_samples = inc_samples[-int(o["baseline_runs"]):]
        n_c, n_i = len(candidate.samples), len(inc_samples)
        mean_c, mean_i = statistics.fmean(candidate.samples), statistics.fmean(inc_samples)
        effect = self.improvement(mean_i, mean_c)
        se = None if noise.sigma is None else noise.sigma * math.sqrt(1 / n_c + 1 / n_i)
        z_eff = self.critical_z(noise)
        if n_c < o["max_samples"]:  # an early look: O'Brien-Fleming-style higher bar
            z_eff *= math.sqrt(o["max_samples"] / max(n_c, 1 + o["confirm_runs"]))
        threshold = None if se is None else max(z_eff * se, o["min_delta"])
        ev = {**self._evidence(candidate, incumbent),
              "candidate_mean": mean_c, "incumbent_mean": mean_i, "effect": effect,
              "sigma": noise.sigma, "sigma_source": noise.source, "noise_pairs": noise.pairs,
              "se": se, "z": z_eff, "threshold": threshold,
              "confidence": confidence(effect, se)}

        def verdict(status: str, rule: str, reason: str) -> Verdict:
            return Verdict(status, reason, {**ev, "rule": rule})

        early = self._rules(candidate, incumbent, verdict)
        if early is not None:
            return early
        more = n_c < o["max_samples"]
        if se is None or threshold is None:  # no repeated run yet: measure the noise first
            if more and effect > 0:
                return verdict("rerun", "measure-noise", f"looks better by {effect:.6g} but the "
                               "noise is unknown; rerunning to measure it")
            return verdict("discard", "no-evidence", f"effect {effect:+.6g} with unknown noise")
        stats = (f"effect {effect:+.6g}, {in_se(effect, se)} (sigma {noise.sigma:.3g} from "
                 f"{noise.pairs} pairs), {n_c} run(s) vs incumbent mean of {n_i}, "
                 f"confidence {confidence(effect, se):.0%}")
        return self._ladder(verdict, candidate, effect, se, threshold,
                            n_c < 1 + o["confirm_runs"], more, stats)

    def judge_paired(self, candidate: Candidate, incumbent: Incumbent,
                     pairs: Sequence[Pair]) -> Verdict:
        """Judge from interleaved pairs: the mean paired difference against its noise."""
        o = self.options
        if not pairs:
            raise ValueError("judge_paired needs at least one pair; call judge first")
        self.pool.observe(incumbent.samples)
        self.pool.observe(candidate.samples)
        st = paired_stats(pairs, self.improvement, self.paired_noise,
                          self.pool.estimate(o["noise_floor"]))
        need, most = max(1, o["confirm_runs"]), o["max_pairs"]
        z_eff = self.critical_z(st.noise, paired=True)
        if st.n < most:  # an early look, as for unpaired reruns
            z_eff *= math.sqrt(most / max(st.n, need))
        threshold = None if st.se is None else max(z_eff * st.se, o["min_delta"])
        ev = {**self._evidence(candidate, incumbent), "paired": True,
              "pairs": [[p.candidate, p.incumbent] for p in pairs],
              "seeds": [p.seed for p in pairs], "differences": list(st.differences),
              "effect": st.mean, "paired_sd": st.sd, "sigma_diff": st.noise.sigma,
              "sigma_source": st.noise.source, "noise_pairs": st.noise.pairs, "se": st.se,
              "z": z_eff, "threshold": threshold, "confidence": confidence(st.mean, st.se)}

        def verdict(status: str, rule: str, reason: str) -> Verdict:
            return Verdict(status, reason, {**ev, "rule": rule})

        early = self._rules(candidate, incumbent, verdict)
        if early is not None:
            return early
        more = st.n < most
        if st.se is None or threshold is None:
            if more and st.mean > 0:
                return verdict("rerun", "measure-noise", f"pairs favour it by {st.mean:.6g} "
                               "but the noise is unknown; running another pair")
            return verdict("discard", "no-evidence",
                           f"paired effect {st.mean:+.6g} with unknown noise")
        sd = "" if st.sd is None else f", sd {st.sd:.3g}"
        stats = (f"paired effect {st.mean:+.6g} over {st.n} pair(s){sd}, "
                 f"{in_se(st.mean, st.se)} (difference sigma {st.noise.sigma:.3g}, "
                 f"{st.noise.source}), confidence {confidence(st.mean, st.se):.0%}")
        return self._ladder(verdict, candidate, st.mean, st.se, threshold, st.n < need, more,
                            stats)

    def _ladder(self, verdict: VerdictFn, candidate: Candidate, effect: float, se: float,
                threshold: float, unconfirmed: bool, more: bool, stats: str) -> Verdict:
        """Steps 2-3 of the module docstring, shared by plain and paired judging."""
        o = self.options
        removes = candidate.lines_delta < 0
        within = effect >= -o["simplicity_z"] * se  # no worse than the noise allows
        promising = effect > o["screen_z"] * se
        if unconfirmed:
            if more and (promising or (removes and within)):
                return verdict("rerun", "confirm", f"promising, confirming: {stats}")
            return verdict("discard", "screen", f"no better than the incumbent: {stats}")
        if effect > threshold:
            needed = o["simplicity_gain"] if o["simplicity_gain"] >= 0 else 2 * threshold
            if candidate.lines_delta > o["simplicity_lines"] and effect < needed:
                return verdict("discard", "complexity",
                               f"gain {effect:.6g} does not pay for +{candidate.lines_delta} "
                               f"lines (needs {needed:.6g} above {o['simplicity_lines']} "
                               f"lines): {stats}")
            return verdict("keep", "improvement",
                           f"better beyond noise (threshold {threshold:.6g}): {stats}")
        if removes and within:
            return verdict("keep", "simplification",
                           f"simplification: removes {-candidate.lines_delta} lines, within "
                           f"noise: {stats}")
        if more and promising:
            return verdict("rerun", "confirm", f"promising but below threshold "
                           f"{threshold:.6g}, rerunning: {stats}")
        return verdict("discard", "within-noise" if effect > -threshold else "worse",
                       f"not better beyond noise (threshold {threshold:.6g}): {stats}")


_SEED_REASON = ("seed-only change: the diff only changes a seed, which draws different "
                "noise rather than testing an idea")
