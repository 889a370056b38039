"""Re-running a night's trees after the fact: `finalize --confirm K` and `--ablate`.

The winner's curse: the best of many noisy candidates is, on average, luckier than it is
good, so its logged score overstates it. `confirm` re-runs the baseline and the best K
times each, interleaved (baseline, best, baseline, best, ... with the same seed in each
pair) so slow drifts of the machine hit both alike, on val and holdout, and reports the
gain that survives. `ablate` re-runs the best with each kept change reverted in turn (its
patch applied in reverse) to show what each change contributes.

Every run goes through the loop's own measurement: `measure()` in the same sandbox, with
the same guards, budget allowance and scoring limit. A tree is measured by loading it into
the tag worktree's index (`git read-tree`), from which each phase's export is taken; the
run branch and HEAD never move, and the worktree is restored afterwards. The caller holds
the tag's lock, so no loop runs meanwhile.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.execution.measure import (
    Guards,
    allowance,
    eval_limit,
    make_guards,
    measure,
    run_env,
    score_holdout,
)
from autoresearch.ledger import Experiment
from autoresearch.review.branch import Change, apply, patch
from autoresearch.task import TaskSpec
from autoresearch.workspace import Workspace, git


@dataclass(frozen=True)
class Stats:
    values: tuple[float, ...]
    failures: tuple[str, ...] = ()  # reasons of runs that gave no metric

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self) -> str:
        if self.mean is None:
            return "n/a"
        sd = f" ± {self.sd:.6f}" if self.sd is not None else ""
        return f"{self.mean:.6f}{sd} (n={len(self.values)})"


@dataclass(frozen=True)
class Confirmation:
    k: int
    baseline: Stats
    best: Stats
    baseline_holdout: Stats = field(default_factory=lambda: Stats(()))
    best_holdout: Stats = field(default_factory=lambda: Stats(()))
    logged_gain: float | None = None  # best - baseline as the ledger has it

    def gain(self, holdout: bool = False) -> float | None:
        b, w = (self.baseline_holdout, self.best_holdout) if holdout else (self.baseline, self.best)
        return None if b.mean is None or w.mean is None else w.mean - b.mean

    def survives(self, better: Callable[[float, float], bool], holdout: bool = False) -> bool:
        """The best beats the baseline by more than twice the standard error of the gap."""
        b, w = (self.baseline_holdout, self.best_holdout) if holdout else (self.baseline, self.best)
        if b.mean is None or w.mean is None or not better(w.mean, b.mean):
            return False
        if b.sd is None or w.sd is None:
            return True  # one run each: better, but nothing is known of the noise
        se = (b.sd ** 2 / len(b.values) + w.sd ** 2 / len(w.values)) ** 0.5
        return abs(w.mean - b.mean) > 2 * se


@dataclass(frozen=True)
class Contribution:
    exp: Experiment
    without: Stats  # the best tree with this change removed
    contribution: float | None  # metric without the change minus the best's (signed)
    negligible: bool  # within the best's noise: a candidate to drop


class Remeasurer:
    """Measures arbitrary trees of a tag with the loop's guards. Use within `ws.lock()`."""

    def __init__(self, task: TaskSpec, ws: Workspace, ledger_intact: Callable[[], bool],
                 baseline: Experiment, say: Callable[[str], None], seed: int = 42):
        self.task, self.ws, self.say, self.seed = task, ws, say, seed
        ws.open_worktree()  # leftover or fresh, at the branch tip and clean
        self.guards: Guards = make_guards(task, ws, say, ledger_intact)
        self.guards.allowance = allowance(task, baseline)
        self.guards.eval_limit = eval_limit(baseline)
        self.logs = ws.state / "review" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def run(self, tree: str, exp_id: int, rep: int, label: str) -> tuple[float | None,
                                                                           float | None, str]:
        """(metric, holdout, failure reason) of one run of `tree`."""
        git("read-tree", tree, cwd=self.ws.worktree)  # the index only: HEAD stays put
        self._n += 1
        log = self.logs / f"{self._n:03d}-{label}.log"
        env = run_env(self.task, self.ws.tag, exp_id, self.seed + rep)
        self.say(f"re-run {self._n}: {label} (seed {self.seed + rep})")
        m = measure(self.task, log, env, self.guards)
        if m.status != "ok":
            return None, None, f"{label}: {m.status}: {m.reason.splitlines()[0]}"
        held = score_holdout(self.task, log.with_suffix(".holdout.log"), env, self.guards)
        return m.metric, held, ""

    def close(self) -> None:
        """Leave the tag as the loop does when it stops: no worktree."""
        self.ws.restore()
        self.ws.close_worktree()


def confirm(r: Remeasurer, baseline: Experiment, best: Experiment, k: int) -> Confirmation:
    """K interleaved pairs: (baseline, best) with the same seed in each pair."""
    runs: dict[str, list[tuple[float | None, float | None, str]]] = {"baseline": [], "best": []}
    trees = {"baseline": baseline.diff.get("tree") or git(
        "rev-parse", f"{baseline.commit}^{{tree}}", cwd=r.ws.root).strip(),
        "best": git("rev-parse", f"{best.commit}^{{tree}}", cwd=r.ws.root).strip()}
    for rep in range(k):
        for which, exp in (("baseline", baseline), ("best", best)):
            runs[which].append(r.run(trees[which], exp.id, rep, f"confirm-{which}-{rep}"))

    def stats(which: str, holdout: bool) -> Stats:
        vals = [v[1] if holdout else v[0] for v in runs[which]]
        return Stats(tuple(x for x in vals if x is not None),
                     () if holdout else tuple(v[2] for v in runs[which] if v[2]))

    logged = None if best.metric is None or baseline.metric is None else \
        best.metric - baseline.metric
    return Confirmation(k, stats("baseline", False), stats("best", False),
                        stats("baseline", True), stats("best", True), logged)


def ablate(r: Remeasurer, best: Experiment, steps: list[Change], k: int,
           best_runs: Stats) -> list[Contribution]:
    """Each kept change reverted in turn from the best tree, `k` runs each. A change a later
    one superseded (its lines changed again) does not revert alone and is not run."""
    best_tree = git("rev-parse", f"{best.commit}^{{tree}}", cwd=r.ws.root).strip()
    out = []
    env = {**os.environ, "GIT_INDEX_FILE": str(r.ws.state / "review" / "ablate.index")}
    for c in steps:
        tree = apply(r.ws.root, best_tree, patch(r.ws.root, c), env, reverse=True)
        if tree is None:
            out.append(Contribution(c.exp, Stats((), ("superseded by a later change: it "
                                                      "does not revert alone",)), None, False))
            continue
        vals, fails = [], []
        for rep in range(k):
            value, _, why = r.run(tree, c.exp.id, rep, f"ablate-{c.exp.id}-{rep}")
            if value is None:
                fails.append(why)
            else:
                vals.append(value)
        s = Stats(tuple(vals), tuple(fails))
        contrib = None if s.mean is None or best_runs.mean is None else s.mean - best_runs.mean
        noise = best_runs.sd or 0.0
        negligible = contrib is not None and abs(contrib) <= 2 * noise
        out.append(Contribution(c.exp, s, contrib, negligible))
    Path(env["GIT_INDEX_FILE"]).unlink(missing_ok=True)
    return out
