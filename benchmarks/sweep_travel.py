"""Does the sweep travel? A toy whose optimum is two decades from where it starts.

The toy file holds ``LR = 10.0`` and ``WARMUP = 0.5``. Its score (minimize) is

    1 + 0.5 * log10(LR / 0.1) ** 2 + 0.1 * log10(WARMUP / 0.2) ** 2

so the optimum score is 1.0 at LR = 0.1, and "within 10% of the optimum" means a
score <= 1.1 (LR within about x2.8 of 0.1). The start scores 3.02.

The real `SweepProposer` is driven through its public protocol, as the loop
drives it: ``setup(history)`` with the baseline row, then per experiment
``propose(context)`` (it rewrites the file in a tmp folder), the score of the
rewritten file, a strict keep-if-better decision (a miss restores the
incumbent's file), and ``observe(row)``. Each configuration runs over many
seeds; printed per configuration: how many seeds reach <= 1.1 within the
budget, the median experiment at which they do, and the median best score.

Configurations: ``tpe`` and ``cmaes`` (the defaults of each sampler, trust
region on), and ``old`` (``travel = false, startup = 10``: the fixed
[v/4, 4v] window around the start and TPE's 10 random start-up trials, the
behaviour before the sweep could travel).

Usage: python benchmarks/sweep_travel.py [--seeds 20] [--experiments 30] [--noise 0]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.proposers.base import Context
from autoresearch.proposers.sweep import SweepProposer, find_constants
from autoresearch.task import MetricSpec, TaskSpec

SOURCE = '"""Toy: only the constants matter."""\nLR = 10.0\nWARMUP = 0.5\n'
OPTIMUM, TARGET = 1.0, 1.1
CONFIGS: dict[str, dict[str, Any]] = {
    "tpe": {"sampler": "tpe"},
    "cmaes": {"sampler": "cmaes"},
    "old": {"sampler": "tpe", "travel": False, "startup": 10},
}


def score(source: str) -> float:
    c = {n: float(k.value) for n, k in find_constants(source).items()}
    return (OPTIMUM + 0.5 * math.log10(c["LR"] / 0.1) ** 2
            + 0.1 * math.log10(c["WARMUP"] / 0.2) ** 2)


def night(options: dict[str, Any], seed: int, experiments: int, noise: float
          ) -> tuple[int | None, float]:
    """(first experiment whose incumbent scores <= TARGET, or None; best true score)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = root / "train.py"
        train.write_text(SOURCE)
        metric = MetricSpec("score", "minimize")
        task = TaskSpec(root=root, editable=("train.py",), protected=(), run="true",
                        metric=metric, time_budget=1.0, timeout=2.0)
        proposer = SweepProposer(task, {**options, "seed": seed})
        incumbent = score(SOURCE)
        measured = incumbent + rng.gauss(0, noise)
        history = [Experiment(id=0, status="keep", description="baseline", metric=measured,
                              proposer="baseline")]
        proposer.setup(history)
        reached: int | None = None
        for i in range(1, experiments + 1):
            before = train.read_text()
            ctx = Context(experiment_id=i, workdir=root, program="", files={"train.py": before},
                          editable=task.editable, metric=metric, time_budget=1.0,
                          history=tuple(history))
            proposal = proposer.propose(ctx)
            if proposal.error:
                row = Experiment(id=i, status="invalid", description=proposal.description,
                                 proposer=proposer.name, proposal=proposal.meta)
            else:
                true = score(train.read_text())
                value = true + rng.gauss(0, noise)
                keep = value < measured
                if keep:
                    incumbent, measured = true, value
                else:
                    train.write_text(before)
                row = Experiment(id=i, status="keep" if keep else "discard",
                                 description=proposal.description, metric=value,
                                 proposer=proposer.name, proposal=proposal.meta)
            history.append(row)
            proposer.observe(row)
            if reached is None and incumbent <= TARGET:
                reached = i
        return reached, incumbent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.0,
                        help="Gaussian sigma added to each measured score")
    args = parser.parse_args()
    print(f"toy: LR 10 -> optimum 0.1, start score {score(SOURCE):.2f}, optimum {OPTIMUM}, "
          f"target <= {TARGET}; {args.experiments} experiments x {args.seeds} seeds, "
          f"noise sigma {args.noise:g}")
    print(f"{'config':8} {'reached':>9} {'median exp':>11} {'median best':>12}")
    for name, options in CONFIGS.items():
        runs = [night(options, seed, args.experiments, args.noise) for seed in range(args.seeds)]
        hits = [r for r, _ in runs if r is not None]
        when = f"{statistics.median(hits):.0f}" if hits else "-"
        best = statistics.median(b for _, b in runs)
        print(f"{name:8} {len(hits):>4}/{args.seeds:<4} {when:>11} {best:>12.3f}")


if __name__ == "__main__":
    main()
