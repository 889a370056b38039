"""The harness's own overhead per experiment, and whether it stays flat as the ledger grows.

Overhead = the wall time of one loop iteration minus the experiment process's
life (spawn to exit, `RunResult.seconds`) minus the proposer's time. What is
left is ours: git (add, write-tree, diff, commit-tree, refs, reset), the scratch
copy, scope, tripwire and hash checks, the orphan sweep, the policy, the
fsync'd ledger append and the display.

The task is trivial on purpose (the editable file *is* the summary block and
`run` is `cat`), so the figures isolate the harness. Target: median <= 50 ms,
flat between experiment 10 and experiment 500.

    python benchmarks/overhead.py              # 500 experiments
    python benchmarks/overhead.py --n 100
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console

import autoresearch.measure as measure_mod
from autoresearch.decide import StrictPolicy
from autoresearch.display import Display
from autoresearch.loop import Loop, LoopOptions
from autoresearch.proposers.base import Context, Proposal, Proposer
from autoresearch.task import load_task
from autoresearch.workspace import Workspace

TOML = """editable = ["m.txt"]
run = "cat m.txt"
time_budget = 10
timeout = 20

[metric]
name = "score"
direction = "minimize"
"""


class RandomProposer(Proposer):
    name = "bench"

    def __init__(self) -> None:
        self.rng = random.Random(0)
        self.seconds: list[float] = []

    def propose(self, context: Context) -> Proposal:
        t0 = time.perf_counter()
        value = self.rng.random()
        (context.workdir / "m.txt").write_text(f"---\nscore: {value:.9f}\n")
        self.seconds.append(time.perf_counter() - t0)
        return Proposal(f"score {value:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="experiments after the baseline")
    args = ap.parse_args()

    repo = Path(tempfile.mkdtemp(prefix="ar-overhead-"))
    (repo / "m.txt").write_text("---\nscore: 0.5\n")
    (repo / "autoresearch.toml").write_text(TOML)
    (repo / "program.md").write_text("benchmark\n")
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)

    run_seconds: list[float] = []
    real_run = measure_mod.run_command

    def timed_run(*a, **kw):  # type: ignore[no-untyped-def]
        res = real_run(*a, **kw)
        run_seconds.append(res.seconds)  # spawn to exit; the sweep after it is ours
        return res

    measure_mod.run_command = timed_run  # type: ignore[assignment]

    task = load_task(repo / "autoresearch.toml")
    proposer = RandomProposer()
    display = Display(task.metric, task.time_budget, Console(file=io.StringIO()))
    loop = Loop(task, Workspace(repo, "bench"), proposer, StrictPolicy(task.metric),
                LoopOptions(max_experiments=args.n, max_failures=10**6), display)

    overhead: list[float] = []
    real_experiment = loop._experiment

    def timed_experiment() -> None:
        runs_before, props_before = len(run_seconds), len(proposer.seconds)
        t0 = time.perf_counter()
        real_experiment()
        total = time.perf_counter() - t0
        inner = sum(run_seconds[runs_before:]) + sum(proposer.seconds[props_before:])
        overhead.append(total - inner)

    loop._experiment = timed_experiment  # type: ignore[method-assign]
    t0 = time.perf_counter()
    loop.run()
    wall = time.perf_counter() - t0

    def med(lo: int, hi: int) -> float:
        return statistics.median(overhead[lo:hi]) * 1000

    n = len(overhead)
    statuses = {s: sum(1 for e in loop.ledger.experiments if e.status == s)
                for s in ("keep", "discard", "duplicate")}
    print(f"experiments: {n}  wall: {wall:.1f}s  statuses: {statuses}")
    print(f"median experiment command time: {statistics.median(run_seconds) * 1000:.1f} ms")
    print(f"harness overhead, median of experiments 1-20:   {med(0, 20):.1f} ms")
    if n >= 40:
        print(f"harness overhead, median of experiments {n - 19}-{n}: {med(n - 20, n):.1f} ms")
        print(f"ratio late/early: {med(n - 20, n) / med(0, 20):.2f}")
    print(f"harness overhead, median of all: {statistics.median(overhead) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
