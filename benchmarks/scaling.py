"""Experiments per hour with 1, 2 and 4 workers, on local slots and on a local Ray cluster.

Each experiment is a sleep-based run (`--sleep` seconds, default 2) of a toy task in a
throwaway git repo, measured through the real path: the executor exports (or ships)
the tree, the sandboxed phase runner starts it, the metric is read from its output.
Runs sleep, so this machine's 2 cores are not what limits the figures: the harness
and the executor are. One untimed round warms every slot (Ray starts a worker process
on each node then, once a night in real use); each worker count then gets one untimed
round of its own and `--per-worker` timed experiments per worker, from the first
submit to the last result. Printed: the rate and its ratio to one worker's
rate on the same backend. Goal: >= 0.9 N for N workers, on both backends.

The Ray cluster is two nodes of two CPUs each on this machine, sealed in private
namespaces by scripts/ray_local_cluster.sh (root, and the `ray` extra, needed).

    python benchmarks/scaling.py                  # both backends
    python benchmarks/scaling.py --backend local --sleep 3 --per-worker 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.execution.executor import Executor, LocalExecutor, make_slots
from autoresearch.execution.jobs import Job, JobEnv
from autoresearch.execution.ray_node import node_guards
from autoresearch.task import load_task
from autoresearch.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
WORKERS = (1, 2, 4)
TOML = """\
editable = ["train.py"]
run = "python train.py"
time_budget = 60
timeout = 120
[metric]
name = "val_loss"
direction = "minimize"
"""
TRAIN = "import time\ntime.sleep({sleep})\nprint('---')\nprint('val_loss: 1.0')\n"


def make_repo(path: Path, sleep: float) -> tuple[Path, str]:
    path.mkdir(parents=True)
    (path / "autoresearch.toml").write_text(TOML)
    (path / "program.md").write_text("Sleep well.\n")
    (path / "train.py").write_text(TRAIN.format(sleep=sleep))

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q", "-b", "main")
    git("-c", "user.email=b@example.com", "-c", "user.name=b", "add", "-A")
    git("-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-q", "-m", "toy")
    return path, git("rev-parse", "HEAD^{tree}")


def executor(backend: str, workers: int, repo: Path, work: Path) -> Executor:
    task = load_task(repo / "autoresearch.toml")
    ws = Workspace(repo, "scaling")
    env = JobEnv(task, "scaling", work / "logs")
    guards = node_guards(task, work / "scratch", lambda d: d)
    if backend == "local":
        return LocalExecutor(make_slots(workers, devices=[]), env, guards, work / "slots",
                             ws.export_tree)
    from autoresearch.execution.ray_backend import RayExecutor
    return RayExecutor(workers, env, guards, ws.archive, num_cpus=1)


def rate(ex: Executor, tree: str, jobs: int, first_id: int) -> float:
    """Experiments per hour, keeping every slot busy until `jobs` have come back ok."""
    submitted = done = 0
    start = time.monotonic()
    while done < jobs:
        while ex.free() and submitted < jobs:
            ex.submit(Job("measure", first_id + submitted, tree))
            submitted += 1
        for d in ex.poll(1.0):
            if d.result.status != "ok":
                raise SystemExit(f"experiment {d.job.exp_id} failed: {d.result.reason}")
            done += 1
    return jobs / (time.monotonic() - start) * 3600


def measure_backend(backend: str, sleep: float, per_worker: int) -> dict[int, float]:
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        repo, tree = make_repo(Path(tmp) / "repo", sleep)
        rates: dict[int, float] = {}
        if backend == "ray":  # one connection for all: its worker processes stay warm
            import ray
            ray.init(logging_level="WARNING", log_to_driver=False)
        # Warm every slot (on Ray: a worker process on each node) before timing anything.
        ex = executor(backend, max(WORKERS), repo, Path(tmp) / "warm")
        rate(ex, tree, 2 * max(WORKERS), 10_000)
        ex.close()
        next_id = 1
        for n in WORKERS:
            ex = executor(backend, n, repo, Path(tmp) / f"w{n}")
            try:
                rate(ex, tree, n, next_id)  # warm-up, untimed
                rates[n] = rate(ex, tree, n * per_worker, next_id + n)
            finally:
                ex.close()
            next_id += n * (per_worker + 1)
        return rates


def on_ray_cluster(sleep: float, per_worker: int) -> dict[int, float]:
    """Run this script's Ray half inside a sealed two-node local cluster."""
    with tempfile.TemporaryDirectory(prefix="scaling-ray-") as tmp:
        out = Path(tmp) / "rates.json"
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run([str(ROOT / "scripts" / "ray_local_cluster.sh"), "2", "2",
                        sys.executable, __file__, "--inside-ray", str(out), "--sleep",
                        str(sleep), "--per-worker", str(per_worker)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {int(k): v for k, v in json.loads(out.read_text()).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["local", "ray", "both"], default="both")
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each run sleeps")
    ap.add_argument("--per-worker", type=int, default=4, help="timed runs per worker")
    ap.add_argument("--inside-ray", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside_ray:
        rates = measure_backend("ray", args.sleep, args.per_worker)
        Path(args.inside_ray).write_text(json.dumps(rates))
        return
    results = {}
    for backend in ("local", "ray") if args.backend == "both" else (args.backend,):
        results[backend] = (on_ray_cluster(args.sleep, args.per_worker) if backend == "ray"
                            else measure_backend(backend, args.sleep, args.per_worker))
    ideal = 3600 / args.sleep
    print(f"sleep-based runs of {args.sleep:g}s, {args.per_worker} timed per worker "
          f"(ideal: {ideal:.0f}/h per worker)")
    print(f"{'backend':8} {'workers':>7} {'exp/hour':>9} {'vs 1 worker':>12} {'goal':>6}  ok")
    for backend, rates in results.items():
        for n, r in rates.items():
            ratio = r / rates[1]
            print(f"{backend:8} {n:7d} {r:9.0f} {ratio:11.2f}x {0.9 * n:5.1f}x  "
                  f"{'yes' if ratio >= 0.9 * n else 'NO'}")


if __name__ == "__main__":
    main()
