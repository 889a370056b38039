"""Early stopping in simulation: experiments per hour gained, false stops, false keeps.

A synthetic training task (minimize, final metric about 1.0, run noise sigma
0.01) whose runs print a loss curve every 2.5% of the budget, as the GPT
template does. A run's curve is

    c(p) = final + B * ((p + p0)^-a - (1 + p0)^-a) + cross * (1 - p) + u + e(p)

- ``final``: the true final metric (the incumbent's minus the candidate's true
  effect, in sigma); ``u ~ N(0, sigma)``: the run's seed/noise, which carries
  into its final metric, so a run that is unlucky early ends unlucky;
- ``cross ~ N(0, --cross sigma)``: how much worse (or better) the candidate
  looks mid-run for reasons that vanish by the end (a higher learning rate that
  pays off only after the warmdown): the curves *cross*, the hazard of pruning;
- ``e(p)``: AR(1) jitter of the smoothed loss, larger early.

The real ``NoiseAwarePolicy`` (pairing on) and ``Pruner`` decide, driven by the
loop's protocol (``autoresearch.decisions.policy`` docstring): the candidate's
first run is watched by the pruner at every curve point; a stopped run is a
discard; otherwise ``judge`` and interleaved pairs. Every full run's curve is
observed by the pruner. A run costs its progress plus a fixed overhead
(start-up, and scoring unless pruned).

Printed per rule: experiments per hour relative to no pruning (directly, from
the compute each stopped run saved, and raw, against the no-pruning nights),
share of candidates stopped, the false-stop rate (stopped runs that the full
protocol, run on a copy of the policy, would have kept; goal <= 2%), the keeps
lost, keeps of no-op changes (false keeps, goal <= 5%) and the true gain of a
night.

Usage: python benchmarks/pruning.py [--seed 0] [--nights 200] [--cross 2] [--harm 2]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoresearch.decisions.noise_aware import NoiseAwarePolicy
from autoresearch.decisions.paired import Pair, pair_order
from autoresearch.decisions.policy import Candidate, Incumbent
from autoresearch.metrics import Curve, ProgressPoint
from autoresearch.task import MetricSpec

METRIC = MetricSpec("val_bpb", "minimize")
GRID = np.arange(1, 41) / 40  # the GPT template's 2.5% marks
SHAPE_B, SHAPE_P0, SHAPE_A = 0.3, 0.05, 0.7
OVERHEAD = 0.08  # start-up and scoring, as a fraction of the budget
START = 0.04  # start-up alone: what a pruned run costs beyond its progress


@dataclass(frozen=True)
class World:
    sigma: float = 0.01
    cross: float = 2.0  # sd of the crossing term, in sigma
    jitter: float = 0.5  # sd of the curve's jitter at the end, in sigma
    rho: float = 0.7  # AR(1) correlation of the jitter between points


def shape(p: np.ndarray) -> np.ndarray:
    return SHAPE_B * ((p + SHAPE_P0) ** -SHAPE_A - (1 + SHAPE_P0) ** -SHAPE_A)


BASE_SHAPE = shape(GRID)


class Runner:
    def __init__(self, world: World, rng: np.random.Generator):
        self.world, self.rng = world, rng
        self.cost = 0.0

    def run(self, final: float, cross: float) -> tuple[Curve, float]:
        """A full run: its curve and its final metric (the cost is charged by the caller)."""
        w, rng = self.world, self.rng
        u = float(rng.normal(0.0, w.sigma))
        scale = w.jitter * w.sigma * (1 + 2 * (1 - GRID))
        e = np.empty(len(GRID))
        e[0] = rng.normal()
        for i in range(1, len(GRID)):
            e[i] = w.rho * e[i - 1] + math.sqrt(1 - w.rho ** 2) * rng.normal()
        values = final + BASE_SHAPE + cross * (1 - GRID) + u + scale * e
        curve = tuple(ProgressPoint(float(p), float(v)) for p, v in zip(GRID, values, strict=True))
        return curve, final + u


def stop_point(policy: NoiseAwarePolicy, incumbent: str, curve: Curve) -> float | None:
    """Where the pruner stops this run, checking after every point as the watch does."""
    pruner = policy.pruner()
    if pruner is None:
        return None
    rule = pruner.rule
    first = min(rule.min_progress if rule.prune else 1.0, rule.screen if rule.screen else 1.0)
    for i, pt in enumerate(curve):
        if pt.progress >= first - 1e-9 and pruner.check(incumbent, "train_loss",
                                                        curve[:i + 1]).stop:
            return pt.progress
    return None


class Night:
    def __init__(self, options: dict[str, Any], world: World, rng: np.random.Generator):
        self.policy = NoiseAwarePolicy(METRIC, options)
        self.world, self.rng = world, rng
        self.runner = Runner(world, rng)
        self.inc = ("c0", 1.0, 0.0)  # commit, true final, crossing term
        self.inc_samples: list[float] = []
        for _ in range(self.policy.baseline_runs()):
            self.inc_samples.append(self.full_run(self.inc))
        self.experiments = self.stopped = self.false_stops = self.keeps = 0
        self.saved = 0.0  # compute the stopped runs did not spend
        self.noop_keeps = self.noops = 0
        self.kept_effects: list[float] = []

    def full_run(self, who: tuple[str, float, float], runner: Runner | None = None) -> float:
        runner = runner or self.runner
        curve, value = runner.run(who[1], who[2])
        runner.cost += 1.0 + OVERHEAD
        pruner = self.policy.pruner()
        if pruner is not None and runner is self.runner:  # a shadow's runs leave no curves
            pruner.observe(who[0], {"train_loss": curve})
        return value

    def protocol(self, policy: NoiseAwarePolicy, runner: Runner, cand: tuple[str, float, float],
                 first: float) -> str:
        """judge, then pairs while it asks for more: the loop's keep protocol."""
        samples = [first]
        inc = Incumbent(tuple(self.inc_samples), {}, {})
        v = policy.judge(Candidate(tuple(samples), {}), inc)
        pairs: list[Pair] = []
        while v.status == "rerun":
            got = {who: self.full_run(cand if who == "candidate" else self.inc, runner)
                   for who in pair_order(len(pairs))}
            pairs.append(Pair(got["candidate"], got["incumbent"]))
            samples.append(got["candidate"])
            v = policy.judge_paired(Candidate(tuple(samples), {}), inc, pairs)
        if v.status == "discard" and runner is self.runner:
            self.inc_samples += [q.incumbent for q in pairs]
        if v.status == "keep" and runner is self.runner:
            self.inc_samples = samples
        return v.status

    def experiment(self, effect: float) -> None:
        w = self.world
        self.experiments += 1
        cand = (f"c{self.experiments}", self.inc[1] - effect * w.sigma,
                self.inc[2] + float(self.rng.normal(0.0, w.cross * w.sigma)))
        curve, value = self.runner.run(cand[1], cand[2])
        stop = stop_point(self.policy, self.inc[0], curve)
        if stop is not None:
            self.stopped += 1
            self.runner.cost += stop + START
            self.saved += 1.0 + OVERHEAD - stop - START
            # Would the full protocol have kept it? Asked of copies, on a separate stream.
            shadow = copy.copy(self.policy)  # the noise pools copied, the pruner unused
            shadow.pool = copy.deepcopy(self.policy.pool)
            shadow.paired_noise = copy.deepcopy(self.policy.paired_noise)
            runner = Runner(w, np.random.default_rng(self.rng.integers(2**63)))
            self.false_stops += self.protocol(shadow, runner, cand, value) == "keep"
            return
        self.runner.cost += 1.0 + OVERHEAD
        pruner = self.policy.pruner()
        if pruner is not None:
            pruner.observe(cand[0], {"train_loss": curve})
        status = self.protocol(self.policy, self.runner, cand, value)
        if effect == 0.0:
            self.noops += 1
            self.noop_keeps += status == "keep"
        if status == "keep":
            self.keeps += 1
            self.kept_effects.append(effect)
            self.inc = cand


def draw_effect(rng: np.random.Generator, harm: float) -> float:
    """The "rich" mix of benchmarks/decisions.py: 45% harmful (-Exp(harm) sigma), 35% no-op,
    20% helpful (0.5/1/2/4 sigma)."""
    u = rng.random()
    if u < 0.45:
        return -float(rng.exponential(harm))
    if u < 0.80:
        return 0.0
    return float(rng.choice([0.5, 1.0, 2.0, 4.0]))


RULES: list[tuple[str, dict[str, Any]]] = [
    ("no pruning", {}),
    ("prune z3 m0.01 from 0.3", {"prune": True, "prune_z": 3.0}),
    ("prune z2 m0.01 from 0.3 (defaults)", {"prune": True}),
    ("prune z2 m0 from 0.3", {"prune": True, "prune_z": 2.0, "prune_margin": 0.0}),
    ("prune z2 m0.01 from 0.2", {"prune": True, "prune_z": 2.0, "prune_min_progress": 0.2}),
    ("prune z2 m0.01 from 0.5", {"prune": True, "prune_z": 2.0, "prune_min_progress": 0.5}),
    ("screen 0.25 z3", {"screen": 0.25, "prune_z": 3.0}),
    ("screen 0.25 z2", {"screen": 0.25, "prune_z": 2.0}),
    ("screen 0.25 + prune z2", {"screen": 0.25, "prune": True, "prune_z": 2.0}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nights", type=int, default=200)
    ap.add_argument("--budget", type=float, default=100.0, help="compute per night, in runs")
    ap.add_argument("--cross", type=float, default=2.0,
                    help="sd of the mid-run crossing term, in sigma")
    ap.add_argument("--harm", type=float, default=2.0,
                    help="mean harm of a harmful change, in sigma")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only the rules whose label contains one of these strings")
    args = ap.parse_args()
    t0 = time.perf_counter()
    world = World(cross=args.cross)
    print(f"Synthetic curves: final ~1.0, sigma {world.sigma}, crossing sd {args.cross:g} "
          f"sigma, jitter {world.jitter:g} sigma, harm -Exp({args.harm:g}) sigma, "
          f"{args.nights} nights of {args.budget:g} full runs of compute; noise-aware "
          "policy, pairing on.\n")
    print(f"{'rule':<34} {'exp/hour':>8} {'raw':>6} {'stopped':>8} {'false stop':>10} "
          f"{'keeps lost':>10} {'no-op keeps':>11} {'keeps':>6} {'true gain':>9}")
    base_rate = None
    for label, options in RULES:
        if args.only and label != "no pruning" and not any(o in label for o in args.only):
            continue
        rng = np.random.default_rng(args.seed)  # the same nights' draws for every rule
        nights = []
        for _ in range(args.nights):
            n = Night(options, world, rng)
            while n.runner.cost < args.budget * (1 + OVERHEAD):
                n.experiment(draw_effect(rng, args.harm))
            nights.append(n)
        rate = sum(n.experiments for n in nights) / sum(n.runner.cost for n in nights)
        base_rate = base_rate or rate
        stopped = sum(n.stopped for n in nights)
        false = sum(n.false_stops for n in nights)
        keeps = sum(n.keeps for n in nights)
        noops = sum(n.noops for n in nights)
        gain = statistics.fmean((1.0 - n.inc[1]) / world.sigma for n in nights)
        cost = sum(n.runner.cost for n in nights)
        direct = (cost + sum(n.saved for n in nights)) / cost
        print(f"{label:<34} {direct:>7.2f}x {rate / base_rate:>5.2f}x "
              f"{stopped / sum(n.experiments for n in nights):>8.1%} "
              f"{(false / stopped if stopped else 0.0):>10.1%} "
              f"{(false / (keeps + false) if keeps + false else 0.0):>10.1%} "
              f"{(sum(n.noop_keeps for n in nights) / noops if noops else 0.0):>11.1%} "
              f"{keeps / len(nights):>6.1f} {gain:>8.2f}s", flush=True)
    print("  exp/hour: experiments per unit of compute relative to the same nights without "
          "stops (the compute the stopped runs saved, added back); raw: experiments per unit "
          "of compute relative to the no-pruning row (noisier: nights differ). false stop: "
          "stopped runs the full protocol would have kept;"
          " keeps lost: those as a share of all would-be keeps. no-op keeps: the false-keep "
          "rate among completed no-op candidates. true gain: sigma units per night.")
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
