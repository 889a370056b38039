"""REPORT.md: a night in one page a pull request's body can be pasted from.

Built from the ledger (and the review branch, confirmation and ablation when there are
any) by pure functions; `write_report` only adds the file and its plot.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from autoresearch.ledger import FAILURES, Experiment
from autoresearch.review.branch import Review
from autoresearch.review.remeasure import Confirmation, Contribution
from autoresearch.task import MetricSpec, TaskSpec
from autoresearch.ui.report import plot_progress, progress_data, summarize


@dataclass(frozen=True)
class Setup:
    task: TaskSpec | None
    hardware: str


def hardware() -> str:
    """This machine, in words (finalize runs where the night ran, as a rule)."""
    import psutil

    parts = [f"{platform.system()} {platform.machine()}", f"{os.cpu_count()} CPUs",
             f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout
            gpus = [g.strip() for g in out.splitlines() if g.strip()]
            if gpus:
                parts.append(", ".join(f"{n}x {g}" for g, n in Counter(gpus).items()))
        except (OSError, subprocess.SubprocessError):
            pass
    return ", ".join(parts)


def reason_kind(reason: str) -> str:
    """A reason with its numbers taken out, so alike reasons count together."""
    line = reason.strip().splitlines()[0] if reason.strip() else "(no reason)"
    return re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", line)[:100]


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def _delta(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{b - a:+.6f}"


def render(rows: list[Experiment], metric: MetricSpec, tag: str, setup: Setup,
           review: Review | None = None, confirmation: Confirmation | None = None,
           ablation: list[Contribution] | None = None, plot: str = "progress.png") -> str:
    s = summarize(rows)
    kept = [e for e in rows if e.status == "keep"]
    task = setup.task
    policies = [e.evidence.get("policy") for e in rows if e.evidence.get("policy")]
    policy = str((task.decision.get("policy") if task else None) or
                 (policies[-1] if policies else "noise-aware"))
    proposers = sorted({e.proposer for e in rows if e.proposer not in ("baseline", "harness")})
    cost = sum(e.cost_usd for e in rows)
    span = (max(e.finished for e in rows) - min(e.started for e in rows)) / 3600 if rows else 0
    out = [f"# autoresearch/{tag}: {metric.name} {_f(s.baseline)} → {_f(s.best)}", ""]
    out += ["## Setup", ""]
    if task is not None:
        out += [f"- task: `{task.run}` in `{task.root.name}`, editable "
                f"{', '.join(f'`{p}`' for p in task.editable)}",
                f"- metric: `{metric.name}` ({metric.direction}), budget {task.time_budget:g} s "
                f"per run (hard timeout {task.timeout:g} s)",
                f"- evaluation: {'separate evaluate phase' if task.evaluate else 'the run'}"
                f"{', holdout split' if task.holdout else ', no holdout split'}; sandbox "
                f"{task.sandbox}"]
    out += [f"- proposer: {', '.join(proposers) or 'none yet'}; policy: {policy}",
            f"- hardware: {setup.hardware}", ""]
    out += ["## Result", "", "| | baseline | best | change |", "|---|---|---|---|",
            f"| {metric.name} (val) | {_f(s.baseline)} | {_f(s.best)} | "
            f"{_delta(s.baseline, s.best)} |"]
    if s.baseline_holdout is not None or s.best_holdout is not None:
        out.append(f"| {metric.name} (holdout) | {_f(s.baseline_holdout)} | "
                   f"{_f(s.best_holdout)} | {_delta(s.baseline_holdout, s.best_holdout)} |")
    out += ["", f"Best: experiment {s.best_id}. ![progress]({plot})", ""]
    out += ["## Kept changes", ""]
    commits = dict(review.commits) if review else {}
    if len(kept) > 1:
        out += [f"| # | change | {metric.name} | Δ | confidence | review commit |",
                "|---|---|---|---|---|---|"]
        prev = kept[0].metric
        for e in kept[1:]:
            conf = e.evidence.get("confidence")
            where = commits.get(e.id, "squashed" if review else "")[:12]
            desc = " ".join(e.description.split()).replace("|", "\\|")
            out.append(f"| {e.id} | {desc} | {_f(e.metric)} | {_delta(prev, e.metric)} | "
                       f"{'' if conf is None else f'{conf:.1%}'} | {where} |")
            prev = e.metric
        if review and review.squashed:
            out += ["", f"Squashed away (later undone): experiments "
                    f"{', '.join(map(str, review.squashed))}."]
        if review:
            out += ["", f"Review branch: `{review.branch}` from `{review.base[:12]}`, "
                    f"{len(review.commits)} commits; its tree is the best kept tree."]
    else:
        out.append("None: no change beat the baseline.")
    out.append("")
    if confirmation is not None:
        out += _confirmation(confirmation, metric)
    if ablation:
        out += _ablation(ablation, metric)
    out += ["## Discards and failures", ""]
    lost = Counter((e.status, reason_kind(e.reason)) for e in rows
                   if e.status not in ("keep", "remeasure"))
    if lost:
        out += ["| status | reason | count |", "|---|---|---|"]
        for (status, why), n in sorted(lost.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"| {status} | {why.replace('|', '/')} | {n} |")
    else:
        out.append("None.")
    out += ["", "## Time and cost", "",
            f"{span:.2f} hours, {s.experiments} experiments ({s.per_hour:.1f} runs/hour), "
            f"{s.kept} kept ({s.keep_rate:.0%}), proposer cost ${cost:.2f}.", ""]
    out += ["## Caveats", ""] + [f"- {c}" for c in caveats(rows, policy, task, confirmation)]
    return "\n".join(out) + "\n"


def _confirmation(c: Confirmation, metric: MetricSpec) -> list[str]:
    out = [f"## Confirmation ({c.k} interleaved re-runs each)", "",
           "| | baseline | best | gain | survives |", "|---|---|---|---|---|"]
    for label, holdout in (("val", False), ("holdout", True)):
        b, w = (c.baseline_holdout, c.best_holdout) if holdout else (c.baseline, c.best)
        if b.mean is None and w.mean is None:
            continue
        gain = c.gain(holdout)
        out.append(f"| {label} | {b.text()} | {w.text()} | "
                   f"{'n/a' if gain is None else f'{gain:+.6f}'} | "
                   f"{'yes' if c.survives(metric.better, holdout) else 'no'} |")
    gain = c.gain()
    if c.logged_gain is not None and gain is not None:
        over = abs(c.logged_gain) - abs(gain)
        curse = (f"the logged gain overstated it by {over:.6f} (the winner's curse)"
                 if over > 0 else "no winner's curse: the re-measured gain is no smaller")
        out += ["", f"Logged gain {c.logged_gain:+.6f}; re-measured {gain:+.6f}: {curse}."]
    fails = [*c.baseline.failures, *c.best.failures]
    if fails:
        out += ["", f"{len(fails)} re-runs gave no metric: {'; '.join(fails[:3])}"]
    return out + ["", "A gain survives when the best beats the baseline by more than twice "
                  "the standard error of the difference.", ""]


def _ablation(rows: list[Contribution], metric: MetricSpec) -> list[str]:
    out = ["## Ablation (the best, each kept change removed)", "",
           f"| # | change | {metric.name} without it | contribution | verdict |",
           "|---|---|---|---|---|"]
    for c in rows:
        contrib = "n/a" if c.contribution is None else f"{c.contribution:+.6f}"
        verdict = "within noise: candidate to drop" if c.negligible else "contributes"
        if c.contribution is None:
            verdict = c.without.failures[0] if c.without.failures else "no metric"
        desc = " ".join(c.exp.description.split()).replace("|", "\\|")
        out.append(f"| {c.exp.id} | {desc} | {c.without.text()} | {contrib} | {verdict} |")
    return out + ["", "Contribution: the metric without the change minus the best's "
                  f"({'positive' if metric.direction == 'minimize' else 'negative'} means the "
                  "change helps).", ""]


def caveats(rows: list[Experiment], policy: str, task: TaskSpec | None,
            confirmation: Confirmation | None) -> list[str]:
    out = []
    sigmas = [e.evidence["sigma"] for e in rows if e.evidence.get("sigma")]
    if sigmas:
        out.append(f"Noise: run-to-run sd about {sigmas[-1]:.6f}; the {policy} policy kept "
                   "changes whose effect stood out from it.")
    else:
        out.append(f"Noise was not estimated (policy {policy}): changes were kept on single "
                   "runs, so gains the size of run-to-run noise may be luck.")
    seed = sum(1 for e in rows if e.evidence.get("rule") == "seed-only")
    if seed:
        out.append(f"{seed} seed-only change(s) refused: a different seed is not an idea.")
    elif policy == "strict":
        out.append("The strict policy does not refuse seed-only changes; check the kept "
                   "changes above for one.")
    if confirmation is None:
        out.append("The best is the best of many noisy candidates, so its logged score "
                   "overstates it (the winner's curse): `autoresearch finalize --confirm 5` "
                   "re-measures it.")
    if task is not None and not task.holdout:
        out.append("No holdout split: every number here is on the split the proposer was "
                   "steered by.")
    failed = sum(1 for e in rows if e.status in FAILURES)
    if failed:
        out.append(f"{failed} experiment(s) failed (crash, timeout, invalid, checks); "
                   "see the table above and `autoresearch show N`.")
    return out


def write_report(state: Path, text: str, rows: list[Experiment], metric: MetricSpec,
                 tag: str) -> Path:
    plot_progress(progress_data(rows, metric), metric, state / "progress.png",
                  f"autoresearch/{tag}")
    out = state / "REPORT.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
