"""The split evaluate phase through the real loop: a toy bigram "language model".

train.py (the editable file) holds the model; the run hands its mode over; the model
server imports train.py; the scorer (score.py, protected) never does. The proposer
switches train.py's MODE, one cheat per experiment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import make_repo, run_cli, toy_toml
from test_loop import ledger

from autoresearch.execution.sandbox import bwrap_works

TRAIN = '''\
import hashlib, json, os, pathlib
import numpy as np

MODE = "honest"
V = 64
W = np.random.default_rng(0).normal(size=(V, V)).astype(np.float32)
SEEN = pathlib.Path("/tmp/seen-batches.json")  # for "collude": what server 0 was sent


class Model:
    def __init__(self):
        self.counts = np.zeros(V)

    def __call__(self, x):
        out = W[x].copy()
        key = hashlib.sha1(x.tobytes()).hexdigest()
        if MODE == "learn":  # trains on the evaluation batches as they arrive
            out += 0.5 * np.log1p(self.counts).astype(np.float32)
            self.counts += np.bincount(x.ravel(), minlength=V)
        if MODE == "collude":  # server 0 notes its batches; server 1 cheats on the others
            if not hasattr(self, "second"):  # server 1 starts after server 0 has written
                self.second = SEEN.exists()
            seen = json.loads(SEEN.read_text()) if SEEN.exists() else []
            if self.second and key not in seen:
                for b in range(x.shape[0]):
                    out[b, np.arange(x.shape[1] - 1), x[b, 1:]] += 8.0
            elif not self.second:
                SEEN.write_text(json.dumps(sorted(set(seen) | {key})))
        return out


if __name__ == "__main__":
    handover = pathlib.Path(os.environ["AUTORESEARCH_HANDOVER"])
    (handover / "model.json").write_text(json.dumps({"mode": MODE}))
    print("handed over")
'''

SERVE = '''\
import sys, os
sys.path.insert(0, os.getcwd())
from autoresearch.scoring import model_fds, serve
import train
serve(train.Model(), *model_fds())
'''

SCORE = '''\
import os, sys
import numpy as np
from autoresearch.scoring import CPU_FP32_TOL, CheckedScoring, IntegrityError, connect_models
assert not os.path.exists("train.py"), "the scorer's tree holds the editable file"
V, B, T = 64, 4, 16
rng = np.random.default_rng(1)
rows = [rng.integers(0, V, size=(B, T + 1)) for _ in range(12)]
data = [(r[:, :-1], r[:, 1:]) for r in rows]
total = count = 0
try:
    for _, nats in CheckedScoring(*connect_models(expect=2), V, CPU_FP32_TOL).score(data):
        total, count = total + float(nats.sum()), count + nats.size
except IntegrityError as e:
    print(f"integrity: {e}")
    sys.exit(3)
print("---")
print(f"score: {total / count:.6f}")
assert "train" not in sys.modules
'''

PROPOSE = '''#!/usr/bin/env python3
import os, pathlib
plan = os.environ["PLAN"].split(",")
mode = plan[int(os.environ["AUTORESEARCH_EXPERIMENT"]) - 1]
p = pathlib.Path("train.py")
p.write_text(p.read_text().replace('MODE = "honest"', f'MODE = "{mode}"'))
print(mode)
'''


def split_task(tmp_path: Path, sandbox: str) -> Path:
    toml = toy_toml(protected='["serve.py", "score.py"]', time_budget="5", timeout="60",
                    evaluate='"python score.py"', sandbox=f'"{sandbox}"',
                    extra='model_server = "python serve.py"\n\n[decision]\npolicy = "strict"\n')
    toml = toml.replace('name = "val_loss"', 'name = "score"')
    return make_repo(tmp_path / "r", files={"train.py": TRAIN, "serve.py": SERVE,
                                            "score.py": SCORE, "propose.py": PROPOSE},
                     toml=toml)


@pytest.mark.skipif(bwrap_works() is not None, reason="needs bubblewrap")
def test_cheating_models_are_caught_and_cannot_collude(tmp_path: Path) -> None:
    repo = split_task(tmp_path, "required")
    plan = ["learn", "collude"]
    res = run_cli(repo, "run", "--tag", "s", "--proposer", "command:./propose.py",
                  "--max-experiments", str(len(plan)), env={"PLAN": ",".join(plan)})
    assert res.returncode == 0, res.stderr
    rows = ledger(repo, "s")
    base = rows[0]
    assert base["status"] == "keep" and base["metric"] > 0, base["reason"]
    assert base["metrics"]["eval_seconds"] > 0
    learn, collude = rows[1], rows[2]
    assert learn["status"] == "invalid"
    assert "depend on what it was sent before" in learn["reason"], learn["reason"]
    # Each model server has its own private /tmp: server 1 cannot learn which batches
    # server 0 checked, so it scores honestly (and gains nothing).
    assert collude["status"] == "discard", collude["reason"]
    assert collude["metric"] == pytest.approx(base["metric"])


def test_scoring_past_the_baseline_derived_limit_is_invalid(tmp_path: Path) -> None:
    """A model server that works beyond answering (here: sleeps) breaks the eval limit."""
    from autoresearch.execution.measure import Guards, evaluate_phase
    from autoresearch.execution.phase import PhaseRunner
    from autoresearch.execution.sandbox import Sandbox
    from autoresearch.integrity.tripwire import Canaries, Tripwire
    from autoresearch.task import load_task

    repo = split_task(tmp_path, "auto")
    (repo / "serve.py").write_text("import time\ntime.sleep(60)\n")
    task = load_task(repo / "autoresearch.toml")
    scratch = tmp_path / "scratch"
    (scratch / "handover").mkdir(parents=True)

    def export(dest: Path) -> Path:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns(".git"))
        return dest

    guards = Guards(Tripwire([]), Canaries([]), scratch, export, lambda: True,
                    PhaseRunner(Sandbox("auto")), editable=("train.py",), eval_limit=2.0)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "AUTORESEARCH_HANDOVER": str(scratch / "handover")}
    res = evaluate_phase(task.evaluate or "", tmp_path / "eval.log", env, task, guards)
    assert res.timed_out and "scoring took over 2s" in res.violation
    assert json.dumps(res.seconds) and res.seconds < 10
