"""What does a night gain? The GPT template on CPU, sweep proposals, then a confirmation.

1. `autoresearch init --template gpt` in a scratch folder and `python prepare.py`
   (cached under ~/.cache/autoresearch after the first time);
2. `autoresearch run`: the baseline plus N sweep experiments at a short budget, with
   the default (noise-aware, paired) policy;
3. `autoresearch finalize --confirm K`: the baseline and the best re-run K times
   each, interleaved, on val and holdout: the gain after the winner's curse.

Printed: experiments per hour, the gain the ledger logged, and the gain that
survives the confirmation (mean ± sd) on val and on holdout.

Usage: python benchmarks/night.py [--budget 60] [--experiments 30] [--confirm 3]
(the defaults take about 2 hours on 2 CPU cores; --budget 20 --experiments 8 about 20
minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

AR = [sys.executable, "-m", "autoresearch"]


def call(cmd: list[str], cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout + res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60)
    ap.add_argument("--experiments", type=int, default=30)
    ap.add_argument("--confirm", type=int, default=3)
    ap.add_argument("--dir", help="keep the task here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(args.dir or tmp).resolve() / "gpt"
        if not (repo / "autoresearch.toml").exists():
            call([*AR, "init", "--yes", "--template", "gpt", str(repo)], Path.cwd())
        call([sys.executable, "prepare.py"], repo)
        call([*AR, "run", "--tag", "night", "--proposer", "sweep", "--time-budget",
              str(args.budget), "--max-experiments", str(args.experiments)], repo)
        status = json.loads(call([*AR, "status", "--tag", "night", "--json"], repo))
        rows = status["experiments"]
        # From the ledger, so a night resumed with --dir is timed as it ran.
        hours = (max(r["finished"] for r in rows) - min(r["started"] for r in rows)) / 3600
        kept = [r for r in rows if r["status"] == "keep"]
        out = call([*AR, "finalize", "--tag", "night", "--confirm", str(args.confirm),
                    "--force"], repo)
        report = (repo / ".autoresearch" / "night" / "REPORT.md").read_text()
    done = sum(r["proposer"] not in ("baseline", "harness") for r in rows)
    print(f"{done} experiments in {hours:.2f} h: {done / hours:.1f} experiments/hour, "
          f"{len(kept) - 1} kept")
    base, best = kept[0], kept[-1]
    sens = base["evidence"].get("sensitivity") or {}
    if sens.get("mde") is not None and sens.get("sigma") is not None:
        print(f"noise: sigma {sens['sigma']:.4f}, smallest detectable gain {sens['mde']:.4f} "
              f"val_bpb ({100 * sens['mde'] / base['metric']:.1f}%)")
    print(f"logged: val_bpb {base['metric']:.6f} -> {best['metric']:.6f} "
          f"({best['metric'] - base['metric']:+.6f}); holdout {base['holdout']} -> "
          f"{best['holdout']}")
    # The confirmation's own lines, as finalize printed and REPORT.md holds them.
    section = report.split("## Confirmation", 1)[-1].split("\n## ", 1)[0]
    print("confirmation (from REPORT.md):" + section.rstrip())
    print(out.strip().splitlines()[-1] if out.strip() else "")


if __name__ == "__main__":
    main()
