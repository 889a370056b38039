"""The driver side of test_ray_backend: run inside scripts/ray_local_cluster.sh (2 nodes).

Makes a real git repo with a tiny task, submits jobs to a `RayExecutor`, kills the
second node's raylet in the middle of a job, and writes what it saw to OUT (JSON) for
the test to check. Usage: python ray_driver.py WORKDIR OUT
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import psutil

from autoresearch.decisions.policy import Verdict
from autoresearch.execution.jobs import Done, Job, JobEnv
from autoresearch.execution.ray_backend import RayExecutor
from autoresearch.execution.ray_node import node_guards
from autoresearch.task import load_task
from autoresearch.workspace import Workspace

TRAIN = """\
import os, pathlib, time
SLEEP = {sleep}
out = pathlib.Path(os.environ["AUTORESEARCH_HANDOVER"])
(out / "model.txt").write_text("0.25")
print("training on", os.environ.get("AUTORESEARCH_NODE"), os.environ.get("AUTORESEARCH_WORKER"))
time.sleep(SLEEP)
"""
HOLDOUT = """\
import os, pathlib, sys
value = float((pathlib.Path(os.environ["AUTORESEARCH_HANDOVER"]) / "model.txt").read_text())
print("---")
print("val_loss:", value * (2 if sys.argv[1:] == ["--holdout"] else 1))
"""
TOML = """\
editable = ["train.py"]
run = "python train.py"
evaluate = "python holdout.py"
holdout = "python holdout.py --holdout"
checks = ["python -c 'import holdout' 2>/dev/null || true"]
time_budget = 5
timeout = 120
[metric]
name = "val_loss"
direction = "minimize"
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_tree(repo: Path, sleep: float) -> str:
    (repo / "train.py").write_text(TRAIN.format(sleep=sleep))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"sleep {sleep}")
    return git(repo, "rev-parse", "HEAD^{tree}")


def wait_all(ex: RayExecutor, n: int, limit: float = 90) -> list[Done]:
    got: list[Done] = []
    end = time.monotonic() + limit
    while len(got) < n and time.monotonic() < end:
        got += ex.poll(1.0)
    return got


def row(done: Done) -> dict:
    res = done.result
    return {"kind": done.job.kind, "exp": done.job.exp_id, "worker": done.worker,
            "node": done.node, "handover": done.handover,
            "result": asdict(res) if is_dataclass(res) else res}


def wait_started(ex: RayExecutor, slot: str, limit: float = 60) -> str:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert not ex.poll(0.2), "the job ended before it was seen running"
        if ex.nodes().get(slot):
            return ex.nodes()[slot]
    raise SystemExit("job never started")


def run_marked(exp_id: int) -> list[int]:
    """Processes of experiment `exp_id` still alive (its run, in whatever sandbox)."""
    found = []
    for p in psutil.process_iter(["environ"]):
        env = p.info.get("environ") or {}
        if env.get("AUTORESEARCH_EXPERIMENT") == str(exp_id) and \
                env.get("AUTORESEARCH_PHASE") == "train":
            found.append(p.pid)
    return found


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    repo = work / "repo"
    repo.mkdir(parents=True)
    (repo / "autoresearch.toml").write_text(TOML)
    (repo / "holdout.py").write_text(HOLDOUT)
    (repo / "program.md").write_text("Make val_loss small.\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    quick = commit_tree(repo, 0)
    slow = commit_tree(repo, 2)
    hang = commit_tree(repo, 300)
    task = load_task(repo / "autoresearch.toml")
    ws = Workspace(repo, "ray")
    logs = work / "logs"
    env = JobEnv(task, "ray", logs)
    guards = node_guards(task, work / "scratch", lambda d: d)
    seen: dict = {}

    ex = RayExecutor(2, env, guards, ws.archive, num_cpus=1)
    # 1. Two slow jobs at once: one per node (each node has one CPU).
    ex.submit(Job("measure", 1, slow, keep_handover=True))
    ex.submit(Job("measure", 2, slow))
    seen["free_when_full"] = ex.free()
    first = wait_all(ex, 2)
    seen["pair"] = [row(d) for d in first]
    seen["logs"] = sorted(p.name for p in logs.iterdir())
    seen["log1"] = (logs / "0001.log").read_text()
    # 2. The holdout scored on the node with the run, answered from the driver.
    d1 = next(d for d in first if d.job.exp_id == 1)
    ex.submit(Job("holdout", 1, slow, handover=d1.handover))
    ex.submit(Job("checks", 1, slow, verdict=Verdict("keep", "better")))
    seen["follow"] = [row(d) for d in wait_all(ex, 2)]
    # 3. abort(): the running phase's processes die; the job comes back interrupted.
    ex.submit(Job("measure", 3, hang))
    wait_started(ex, "w0")
    end = time.monotonic() + 30
    while not run_marked(3) and time.monotonic() < end:
        time.sleep(0.2)
    seen["abort_running_before"] = bool(run_marked(3))
    ex.abort()
    seen["aborted"] = [row(d) for d in wait_all(ex, 1, 60)]
    seen["abort_left"] = run_marked(3)
    seen["logs_after_abort"] = sorted(p.name for p in logs.iterdir())

    # 4. A node dies mid-job: a crash naming it; the other node goes on.
    victim = RayExecutor(1, env, guards, ws.archive, num_cpus=1, resources={"node1": 1})
    victim.submit(Job("measure", 4, hang))
    seen["victim_node"] = wait_started(victim, "w0")
    end = time.monotonic() + 30
    while not run_marked(4) and time.monotonic() < end:
        time.sleep(0.2)
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "raylet" in cmd and "node_manager_port=6391" in cmd:
            os.kill(p.pid, 9)
    seen["died"] = [row(d) for d in wait_all(victim, 1, 60)]
    seen["died_left"] = run_marked(4)
    ex2 = RayExecutor(1, env, guards, ws.archive, num_cpus=1)
    ex2.submit(Job("measure", 5, quick))
    seen["after"] = [row(d) for d in wait_all(ex2, 1)]
    for e in (victim, ex2, ex):
        e.close()
    out.write_text(json.dumps(seen, default=str, indent=1))


if __name__ == "__main__":
    main()
