"""How busy does the device stay when the proposer is slow? Sequential vs pipelined.

A simulated night at 1/100 scale: each run sleeps 3 s (a 300 s budget), each
proposal takes 0.6 s (a 60 s LLM), through the real CLI, sandbox and ledger. Run
twice, side by side: ``--pipeline 0`` (propose only when the worker is free) and
the default (one proposal prepared while the experiment runs).

Printed: device utilization (the share of wall time from the first proposal to the
last result during which a run was executing), experiments per hour, and the
harness overhead per experiment: the median gap between one run's end and the next
run's start on the worker, and the time each job takes beyond its sleep.

Usage: python benchmarks/pipeline.py [--experiments 10] [--run 3] [--think 0.6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = """import time
VALUE = 1.0
time.sleep(RUN)
print("---")
print(f"val_loss: {VALUE:.6f}")
"""
# Each proposal writes a fresh value: every tree differs, about a third improve.
PROPOSE = """#!/usr/bin/env python3
import os, pathlib, re, time
time.sleep(THINK)
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
p = pathlib.Path("train.py")
old = float(re.search(r"VALUE = ([0-9.]+)", p.read_text()).group(1))
new = old - 0.01 if n % 3 == 0 else old + 0.001 * n
p.write_text(re.sub(r"VALUE = [0-9.]+", f"VALUE = {new:.4f}", p.read_text()))
print(f"value {new:.4f}")
"""
TOML = """editable = ["train.py"]
run = "python train.py"
time_budget = BUDGET
timeout = 120

[decision]
policy = "strict"

[metric]
name = "val_loss"
direction = "minimize"
"""


def make_repo(root: Path, run: float, think: float) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN.replace("RUN", str(run)))
    (root / "propose.py").write_text(PROPOSE.replace("THINK", str(think)))
    (root / "propose.py").chmod(0o755)
    (root / "program.md").write_text("Lower VALUE.\n")
    (root / "autoresearch.toml").write_text(TOML.replace("BUDGET", str(max(1, int(run)))))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "task"]):
        subprocess.run(["git", *cmd], cwd=root, check=True, env=env)
    return root


def measure(root: Path, pipeline: int, experiments: int) -> dict[str, float]:
    """Run the night; utilization and gaps from the ledger's job timeline."""
    res = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--tag", "b",
                          "--proposer", "command:./propose.py", "--pipeline", str(pipeline),
                          "--max-experiments", str(experiments)], cwd=root,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    rows = [json.loads(line) for line in
            (root / ".autoresearch" / "b" / "results.jsonl").read_text().splitlines()]
    cands = [r for r in rows if r["proposer"] == "command"]
    runs = sorted((j[2], j[3]) for r in cands for j in r["evidence"].get("jobs", [])
                  if j[0] == "measure")
    start = min(r["started"] for r in cands)
    end = max(e for _, e in runs)
    busy = sum(e - s for s, e in runs)  # one worker: runs never overlap
    gaps = [b[0] - a[1] for a, b in zip(runs, runs[1:])]
    return {"utilization": busy / (end - start), "per_hour": 3600 * len(cands) / (end - start),
            "gap": statistics.median(gaps) if gaps else 0.0,
            "job": statistics.median(e - s for s, e in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=10)
    ap.add_argument("--run", type=float, default=3.0)
    ap.add_argument("--think", type=float, default=0.6)
    args = ap.parse_args()
    ideal = args.run / (args.run + args.think)
    print(f"run {args.run:g} s, proposal {args.think:g} s, {args.experiments} experiments "
          f"each; sequential ideal {100 * ideal:.0f}%")
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for name, pipeline in (("sequential", 0), ("pipelined", 1)):
            root = make_repo(Path(tmp) / name, args.run, args.think)
            out[name] = measure(root, pipeline, args.experiments)
    print(f"{'mode':<12}{'utilization':>12}{'exp/hour':>10}{'gap between runs':>18}"
          f"{'job - sleep':>13}")
    for name, m in out.items():
        print(f"{name:<12}{100 * m['utilization']:>11.1f}%{m['per_hour']:>10.0f}"
              f"{m['gap']:>17.2f}s{m['job'] - args.run:>12.2f}s")
    print("gap between runs: the worker's idle time per experiment (the proposer's time plus "
          "the decision, when sequential); job - sleep: the harness's overhead inside each "
          "job (export, sandbox, interpreter start, reading the result)")
    ratio = out["pipelined"]["per_hour"] / out["sequential"]["per_hour"]
    print(f"pipelined / sequential experiments per hour: {ratio:.2f}x (goal: utilization "
          ">= 97% pipelined)")


if __name__ == "__main__":
    main()
