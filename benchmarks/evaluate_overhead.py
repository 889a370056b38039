"""What the trusted evaluate phase costs per experiment, for the GPT task's CPU defaults.

Three ways to score the same handed-over model, interleaved in each repeat so that
machine load falls on all of them alike:

- `in-process`: train.py's own path when run by hand (import train.py, load the
  weights, evaluate_bpb), in one fresh process: the cost of the metric itself;
- `split, no sandbox`: the harness's split evaluate phase (a scorer without train.py
  and two model servers, wired by pipes, with the probes and reference checks);
- `split, sandboxed`: the same inside bubblewrap, as `autoresearch run` does it.

This trains the default CPU model once (the cost does not depend on how well it
trained), then times each way N times.

    python benchmarks/evaluate_overhead.py                # 5 repeats, 300 s budget
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

from autoresearch.execution.evaluate import split_evaluate
from autoresearch.execution.measure import Guards
from autoresearch.execution.phase import PhaseRunner
from autoresearch.execution.sandbox import Sandbox, bwrap_works
from autoresearch.integrity.tripwire import Canaries, Tripwire
from autoresearch.metrics import read_metric

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "templates" / "gpt"
IN_PROCESS = """
import os, sys, torch
sys.path.insert(0, os.getcwd())
import prepare, train
ckpt = torch.load(os.path.join(os.environ["AUTORESEARCH_HANDOVER"], "model.pt"),
                  weights_only=True)
model = train.build_model(train.GPTConfig(**ckpt["config"]))
model.load_state_dict(ckpt["state_dict"])
model.eval()
print("---")
print(f"val_bpb: {prepare.evaluate_bpb(model, prepare.Tokenizer.from_directory(), 8):.6f}")
"""


def guards(repo: Path, scratch: Path, cache: Path, mode: str) -> Guards:
    def export(dest: Path) -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(repo, dest)
        return dest

    return Guards(Tripwire([]), Canaries([]), scratch, export, lambda: True,
                  PhaseRunner(Sandbox(mode)), readonly=(cache,),
                  eval_only=(cache / "eval", cache / "raw"), editable=("train.py",))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-seconds", type=float, default=20)
    ap.add_argument("--budget", type=float, default=300, help="the budget to compare against")
    args = ap.parse_args()
    cache = Path(os.environ.get("AUTORESEARCH_CACHE") or Path.home() / ".cache" / "autoresearch")

    with tempfile.TemporaryDirectory(prefix="ar-eval-") as tmp:
        repo, scratch = Path(tmp) / "gpt", Path(tmp) / "scratch"
        shutil.copytree(TEMPLATE, repo)
        (scratch / "handover").mkdir(parents=True)
        env = {**os.environ, "AUTORESEARCH_HANDOVER": str(scratch / "handover"),
               "AUTORESEARCH_TIME_BUDGET": str(args.train_seconds),
               "AUTORESEARCH_CACHE": str(cache),
               # `python` in the commands is this interpreter, as `autoresearch run` has it
               "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                        os.environ.get("PATH", "")])}
        subprocess.run([sys.executable, "prepare.py"], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        print(f"training the default CPU model for {args.train_seconds:g}s ...", flush=True)
        subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        ways = {"in-process": None, "split, no sandbox": "none"}
        if bwrap_works() is None:
            ways["split, sandboxed"] = "required"
        else:
            print(f"no sandbox here ({bwrap_works()}); timing the unsandboxed ways only")
        times: dict[str, list[float]] = {way: [] for way in ways}
        for i in range(args.repeats):
            for way, mode in ways.items():
                t0 = time.perf_counter()
                if mode is None:
                    out = subprocess.run([sys.executable, "-c", IN_PROCESS], cwd=repo, env=env,
                                         check=True, capture_output=True, text=True).stdout
                else:
                    log = Path(tmp) / f"{i}-{mode}.log"
                    res = split_evaluate("python prepare.py score", "python prepare.py serve",
                                         log, env, 600, guards(repo, scratch, cache, mode))
                    out = log.read_text()
                    if not res.ok:
                        sys.exit(f"{way} failed:\n{out[-2000:]}")
                times[way].append(time.perf_counter() - t0)
                bpb = read_metric(out, "val_bpb").value
                print(f"  #{i + 1} {way}: {times[way][-1]:.2f}s (val_bpb {bpb})", flush=True)
    base = statistics.median(times["in-process"])
    for way, values in times.items():
        med = statistics.median(values)
        print(f"{way:<18} median {med:6.2f}s  {med / base:4.2f}x in-process  "
              f"{100 * med / args.budget:4.1f}% of a {args.budget:g}s budget")


if __name__ == "__main__":
    main()
