"""The harness's own overhead per experiment, and whether it stays flat as the ledger grows.

Overhead = the wall time of one loop iteration minus the experiment process's
life (spawn to exit, `RunResult.seconds`) minus the proposer's time. What is
left is ours: git (add, write-tree, diff, commit-tree, refs, reset), the scratch
copy, scope, tripwire and hash checks, the orphan sweep, the policy, the
fsync'd ledger append and the display.

The task is trivial on purpose (the editable file *is* the summary block and
`run` is `cat`), so the figures isolate the harness. Target: median <= 50 ms,
flat between experiment 10 and experiment 500.

The same experiments run twice in one invocation, without the OS sandbox and with
it (bubblewrap), so the sandbox's cost per experiment is a difference measured under
the same machine load: its start-up is inside the command time, its exports in ours.

    python benchmarks/overhead.py              # 500 experiments per mode
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

import autoresearch.execution.phase as phase_mod
from autoresearch.decisions.policy import StrictPolicy
from autoresearch.execution.sandbox import bwrap_works
from autoresearch.loop import Loop, LoopOptions
from autoresearch.proposers.base import Context, Proposal, Proposer
from autoresearch.task import load_task
from autoresearch.ui.display import Display
from autoresearch.workspace import Workspace

TOML = """editable = ["m.txt"]
run = "cat m.txt"
sandbox = "{sandbox}"
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


def bench(sandbox: str, n: int) -> dict[str, float]:
    """Run `n` experiments of the trivial task; return medians in milliseconds."""
    repo = Path(tempfile.mkdtemp(prefix=f"ar-overhead-{sandbox}-"))
    (repo / "m.txt").write_text("---\nscore: 0.5\n")
    (repo / "autoresearch.toml").write_text(TOML.format(sandbox=sandbox))
    (repo / "program.md").write_text("benchmark\n")
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)

    run_seconds: list[float] = []
    real_run = phase_mod.run_command

    def timed_run(*a, **kw):  # type: ignore[no-untyped-def]
        res = real_run(*a, **kw)
        run_seconds.append(res.seconds)  # spawn to exit; the sweep after it is ours
        return res

    phase_mod.run_command = timed_run  # type: ignore[assignment]

    task = load_task(repo / "autoresearch.toml")
    proposer = RandomProposer()
    display = Display(task.metric, task.time_budget, Console(file=io.StringIO()))
    loop = Loop(task, Workspace(repo, "bench"), proposer, StrictPolicy(task.metric),
                LoopOptions(max_experiments=n, max_failures=10**6), display)

    overhead: list[float] = []
    totals: list[float] = []
    real_experiment = loop._experiment

    def timed_experiment() -> None:
        runs_before, props_before = len(run_seconds), len(proposer.seconds)
        t0 = time.perf_counter()
        real_experiment()
        total = time.perf_counter() - t0
        inner = sum(run_seconds[runs_before:]) + sum(proposer.seconds[props_before:])
        overhead.append(total - inner)
        totals.append(total)

    loop._experiment = timed_experiment  # type: ignore[method-assign]
    loop.run()
    phase_mod.run_command = real_run  # type: ignore[assignment]

    def med(values: list[float], lo: int = 0, hi: int | None = None) -> float:
        return statistics.median(values[lo:hi]) * 1000

    k = len(overhead)
    return {"experiments": k, "command": med(run_seconds), "early": med(overhead, 0, 20),
            "late": med(overhead, k - 20, k), "overhead": med(overhead),
            "total": med(totals)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="experiments after the baseline")
    args = ap.parse_args()
    modes = ["none"] + (["required"] if bwrap_works() is None else [])
    if len(modes) == 1:
        print(f"no sandbox here ({bwrap_works()}): measuring sandbox = none only")
    # ABBA order: a drift in machine load over the run falls on both modes alike.
    runs = [(mode, bench(mode, args.n // 2)) for mode in modes + modes[::-1]]
    results = {mode: {key: statistics.mean(r[key] for m, r in runs if m == mode)
                      for key in runs[0][1]} for mode in modes}
    print(f"medians per block of {args.n // 2}, averaged over two blocks per mode (ABBA)")
    print(f"{'sandbox':<10}{'experiments':>12}{'command ms':>12}{'ours ms':>9}"
          f"{'1-20 ms':>9}{'last 20 ms':>11}{'total ms':>10}")
    for mode, r in results.items():
        print(f"{mode:<10}{r['experiments']:>12.0f}{r['command']:>12.1f}{r['overhead']:>9.1f}"
              f"{r['early']:>9.1f}{r['late']:>11.1f}{r['total']:>10.1f}")
    if "required" in results:
        cost = results["required"]["total"] - results["none"]["total"]
        print(f"the sandbox costs {cost:.1f} ms per experiment (median total, same run)")


if __name__ == "__main__":
    main()
