"""Each policy on real loops: the real CLI, a toy task whose noise the test controls.

The toy's metric is ``VALUE`` plus Gaussian noise seeded by the experiment number and
the seed the harness exports, so every run gets fresh but reproducible noise. A scripted
proposer makes one planned edit per experiment: a no-op, a seed change that
happens to help, a real gain, a deletion of dead code, a gain that breaks the
VRAM guardrail.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_repo, run_cli, toy_toml

TRAIN = '''\
import os
import pathlib
import random

SEED = 42
VALUE = 1.0
VRAM = 1000.0
UNUSED_A = 1
UNUSED_B = 2
UNUSED_C = 3


def main() -> None:
    # Fresh noise per run, from what the harness exports (a run keeps no state across runs).
    n = int(os.environ["AUTORESEARCH_EXPERIMENT"]) * 1000 + int(os.environ["AUTORESEARCH_SEED"])
    noise = random.Random(1000 + n).gauss(0.0, float(os.environ["NOISE_SIGMA"]))
    lucky = 0.0 if SEED == 42 else -0.002  # a seed that "helps", as in Karpathy's first night
    print("---")
    print(f"val_loss:     {VALUE + lucky + noise:.6f}")
    print(f"peak_vram_mb: {VRAM:.1f}")


if __name__ == "__main__":
    main()
'''

PROPOSE = '''\
#!/usr/bin/env python3
import json, os, pathlib, re
ctx = json.loads(pathlib.Path(os.environ["AUTORESEARCH_CONTEXT"]).read_text())
n = sum(1 for e in ctx["history"] if e["proposer"] == "command")  # proposals so far
name = os.environ["PLAN"].split(",")[n]
edits = {
    "noop": lambda s: s.replace("VRAM = 1000.0\\n", "VRAM = 1000.0\\nPAD = 0\\n"),
    "seed": lambda s: s.replace("SEED = 42", "SEED = 137"),
    "gain": lambda s: s.replace("VALUE = 1.0", "VALUE = 0.9"),
    "simplify": lambda s: re.sub(r"UNUSED_\\w = \\d\\n", "", s),
    "vram": lambda s: s.replace("VALUE = 0.9", "VALUE = 0.8").replace("1000.0", "1500.0"),
}
p = pathlib.Path("train.py")
p.write_text(edits[name](p.read_text()))
print(name)
'''


def run_plan(tmp_path: Path, plan: list[str], sigma: float, decision: str) -> list[dict]:
    repo = make_repo(tmp_path / "r", files={"train.py": TRAIN, "propose.py": PROPOSE},
                     toml=toy_toml(extra=decision))
    env = {"NOISE_SIGMA": str(sigma), "PLAN": ",".join(plan)}
    # The scripted proposer picks its edit by how many results it has seen: proposing
    # ahead (the default) would show it the same history twice.
    res = run_cli(repo, "run", "--tag", "t", "--proposer", "command:./propose.py",
                  "--pipeline", "0", "--max-experiments", str(len(plan)), env=env)
    assert res.returncode == 0, res.stderr
    path = repo / ".autoresearch" / "t" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_plan(rows: list[dict], plan: list[str]) -> dict[str, dict]:
    proposals = [r for r in rows if r["description"] != "baseline" and r["status"] != "remeasure"]
    assert len(proposals) == len(plan), [(r["status"], r["description"]) for r in rows]
    return dict(zip(plan, proposals))


def test_noise_aware_on_a_real_loop(tmp_path: Path) -> None:
    plan = ["noop", "seed", "gain", "simplify", "vram"]
    decision = ('\n[decision]\npolicy = "noise-aware"\nremeasure_every = 1\n'
                'guardrails = ["peak_vram_mb <= 1.2 * baseline"]\n')
    rows = run_plan(tmp_path, plan, 0.01, decision)
    baseline = rows[0]
    assert baseline["status"] == "keep" and len(baseline["evidence"]["samples"]) == 5
    r = by_plan(rows, plan)
    assert r["noop"]["status"] == "discard", r["noop"]["reason"]
    assert r["seed"]["status"] == "discard" and "seed-only" in r["seed"]["reason"]
    gain = r["gain"]
    assert gain["status"] == "keep", gain["reason"]
    ev = gain["evidence"]
    assert len(ev["samples"]) >= 2  # confirmed before keeping
    # Confirmed by interleaved pairs (the default): judged on the paired differences' noise.
    assert ev["paired"] and ev["pairs"] and ev["incumbent_runs"]
    assert 0.003 < ev["sigma_diff"] < 0.05 and ev["effect"] > ev["threshold"] > 0
    assert ev["confidence"] > 0.99 and ev["rule"] == "improvement"
    assert r["simplify"]["status"] == "keep", r["simplify"]["reason"]
    assert "simplification" in r["simplify"]["reason"]
    assert r["simplify"]["evidence"]["lines_delta"] == -3
    assert r["vram"]["status"] == "discard" and "peak_vram_mb" in r["vram"]["reason"]
    # The seed-only change was judged from its diff and never run.
    assert r["seed"]["log"] == "" and r["seed"]["evidence"]["rule"] == "seed-only"
    # One judged non-keep since the last keep (the no-op) triggered a re-measure.
    remeasures = [row for row in rows if row["status"] == "remeasure"]
    assert remeasures and remeasures[0]["commit"] == baseline["commit"]


def test_strict_on_a_real_loop_keeps_a_lucky_seed(tmp_path: Path) -> None:
    plan = ["seed", "noop", "gain"]
    rows = run_plan(tmp_path, plan, 0.0, '\n[decision]\npolicy = "strict"\n')
    assert len(rows[0]["evidence"]["samples"]) == 1
    r = by_plan(rows, plan)
    assert r["seed"]["status"] == "keep"  # Karpathy's rule: any improvement, even a seed
    assert r["noop"]["status"] == "discard"  # a tie does not beat the incumbent
    assert r["gain"]["status"] == "keep"
    assert all(len(row["evidence"]["samples"]) == 1 for row in rows)
