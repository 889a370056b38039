"""What the separate evaluate phase costs per experiment, for the GPT task's CPU defaults.

The trusted metric comes from `python prepare.py evaluate` in a fresh process:
interpreter and torch start-up, loading the handed-over weights, the causality and
own-loss probes, then the same evaluate_bpb train.py used to run in-process. This
trains the default CPU model once (a short budget is enough: the cost does not
depend on how well it trained), then times the evaluate command N times.

    python benchmarks/evaluate_overhead.py                # 5 timings, 300 s budget
    python benchmarks/evaluate_overhead.py --repeats 3 --train-seconds 20

Uses AUTORESEARCH_CACHE (default ~/.cache/autoresearch): run `python prepare.py`
in a GPT task once first, or let this script prepare Shakespeare there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "templates" / "gpt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-seconds", type=float, default=20)
    ap.add_argument("--budget", type=float, default=300, help="the budget to compare against")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ar-eval-") as tmp:
        repo, handover = Path(tmp) / "gpt", Path(tmp) / "handover"
        shutil.copytree(TEMPLATE, repo)
        handover.mkdir()
        env = {**os.environ, "AUTORESEARCH_HANDOVER": str(handover),
               "AUTORESEARCH_TIME_BUDGET": str(args.train_seconds)}
        subprocess.run([sys.executable, "prepare.py"], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        print(f"training the default CPU model for {args.train_seconds:g}s ...", flush=True)
        subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "prepare.py", "evaluate"], cwd=repo, env=env,
                                 check=True, capture_output=True, text=True).stdout
            times.append(time.perf_counter() - t0)
            bpb = next(line.split()[1] for line in out.splitlines()
                       if line.startswith("val_bpb:"))
            print(f"  evaluate #{i + 1}: {times[-1]:.2f}s (val_bpb {bpb})", flush=True)
    med = statistics.median(times)
    print(f"evaluate phase: median {med:.2f}s over {len(times)} runs, "
          f"{100 * med / args.budget:.1f}% of a {args.budget:g}s budget")


if __name__ == "__main__":
    main()
