"""Is the time budget fair under load, and which clock fakes does it catch?

Runs the GPT template (tiny profile, CPU, handing the model over as under the harness) the
way the harness's run phase does (`run_command` + `BudgetClock`), with CPU hogs (busy
Python loops) started either at launch (the night got busier after the baseline) or at a
random moment of the run (a hog starts mid-run). Each loaded run is done twice:

- the older rule: no stop; the run ends by its own clock and is `invalid` when its total
  time exceeds the budget plus the allowance from the idle baseline's start-up and teardown;
- the stop rule: the harness starts the clock at the run's first step, creates the stop
  file at the budget and kills (`invalid`) a run still going `grace` seconds later.

Every run is honest, so every `invalid` is a false one. Start-up and teardown do not depend
on the budget, so each run's verdict is also projected to a 300 s budget (the same
overheads against the 300 s allowance). Then clock fakes (train.py's clock slowed by k and
the stop ignored, as a cheat would) are run at factors either side of the predicted
threshold `1 + grace / budget`, and the 300 s figures are computed from the rule.

    python benchmarks/load_fairness.py                 # 20 s budget, 3 runs per case
    python benchmarks/load_fairness.py --budget 60 --repeats 5 --hogs 4

Needs the `gpt` extra (torch). On a shared machine the other tenants' load adds to the
hogs: the figures are what this machine did while it ran, not a constant.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gpt"))
from gpt_fixtures import copy_template, prepared_cache  # noqa: E402

from autoresearch.execution.budget import (  # noqa: E402
    STOP_ENV,
    BudgetClock,
    legacy_allowance,
    stop_allowance,
)
from autoresearch.execution.process import run_command  # noqa: E402

TINY = dict(CPU_DEPTH="2", CPU_DEVICE_BATCH_SIZE="16", CPU_TOTAL_BATCH_SIZE="1024")
IMPORTS = "from prepare import MAX_SEQ_LEN"
# The attack suite's clock fake, plus dropping the stop (honouring it, a fake gains nothing).
FAKE = ("import time as _t\n_r = _t.time\n_t0 = _r()\n_t.time = lambda: _t0 + (_r() - _t0) / {k}\n"
        "import os as _o\n_o.environ.pop('AUTORESEARCH_STOP_FILE', None)\n")


@dataclass(frozen=True)
class Run:
    seconds: float  # launch to exit, measured here
    startup: float | None  # launch to the first-step line, as the harness read it
    stopped: float | None  # when the stop file was created
    violation: str
    exit_code: int | None
    steps: int


class Hogs:
    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        if not self.procs:
            self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                           start_new_session=True) for _ in range(self.n)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


def run_once(repo: Path, work: Path, env: dict[str, str], budget: float,
             rule: float | None, stop: bool, hogs: Hogs, hog_at: float | None) -> Run:
    control = work / "control"
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir(parents=True)
    handover = work / "handover"
    handover.mkdir(exist_ok=True)
    log = work / "run.log"
    clock = BudgetClock(log, control / "stop", budget, rule if stop else None)
    run_env = {**env, "AUTORESEARCH_HANDOVER": str(handover)}
    if stop:
        run_env[STOP_ENV] = str(control / "stop")

    def poll(elapsed: float) -> str | None:
        if hog_at is not None and elapsed >= hog_at:
            hogs.start()
        return clock.poll(elapsed)  # without `stop` the clock has no rule: it only watches

    try:
        res = run_command([sys.executable, "train.py"], repo, log, 4 * budget + 180, run_env,
                          poll=poll)
    finally:
        hogs.stop()
    steps = re.findall(r"^num_steps:\s+(\d+)", log.read_text(errors="replace"), re.M)
    violation = res.violation or (clock.overstayed(res.seconds) if stop else None) or ""
    return Run(res.seconds, clock.marker, clock.stopped if stop else None, violation,
               res.exit_code, int(steps[-1]) if steps else 0)


def old_invalid(run: Run, budget: float, allowance: float) -> bool:
    return run.exit_code != 0 or run.seconds > budget + allowance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=3, help="busy processes while loaded")
    parser.add_argument("--fakes", type=float, nargs="*", default=None,
                        help="clock-fake factors (default: either side of the threshold)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budget, rng = args.budget, random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="ar-load-") as tmp:
        root = Path(tmp)
        cache = prepared_cache(root)
        repo = copy_template(root / "gpt", **TINY)
        env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_PROFILE": "tiny",
               "AUTORESEARCH_DEVICE": "cpu", "AUTORESEARCH_TIME_BUDGET": f"{budget:g}",
               "PYTHONUNBUFFERED": "1"}
        hogs = Hogs(args.hogs)
        print(f"GPT template, tiny profile, CPU; {budget:g} s budget; {os.cpu_count()} CPUs "
              f"(shared); {args.hogs} hog(s) when loaded; {args.repeats} run(s) per case",
              flush=True)

        base = run_once(repo, root, env, budget, None, True, hogs, None)
        assert base.exit_code == 0 and base.startup is not None, (root / "run.log").read_text()
        teardown = max(0.0, base.seconds - base.stopped) if base.stopped else 0.0
        old = legacy_allowance(budget, max(0.0, base.seconds - budget))
        new = stop_allowance(budget, base.startup, teardown)
        print(f"idle baseline: {base.seconds:.1f}s, first step at {base.startup:.1f}s, "
              f"teardown {teardown:.1f}s, {base.steps} steps")
        print(f"older rule: total time <= budget + {old:.1f}s | stop rule: clock starts at the "
              f"first step (at most {new.startup_limit:.1f}s after launch), exit within "
              f"{new:.1f}s of the stop", flush=True)
        old300 = legacy_allowance(300, max(0.0, base.seconds - budget))
        new300 = stop_allowance(300, base.startup, teardown)

        rows = []
        for case in ("load from launch", "hog starts mid-run"):
            for rule_name in ("older rule", "stop rule"):
                runs = []
                for _ in range(args.repeats):
                    hog_at = 0.0 if case == "load from launch" else \
                        rng.uniform(0.0, base.startup + budget / 2)
                    stop = rule_name == "stop rule"
                    runs.append(run_once(repo, root, env, budget, new, stop, hogs, hog_at))
                if rule_name == "older rule":
                    bad = [old_invalid(r, budget, old) for r in runs]
                    bad300 = [r.exit_code != 0 or r.seconds - budget > old300 for r in runs]
                else:
                    bad = [bool(r.violation) or r.exit_code != 0 for r in runs]
                    # Projected: the same teardown after a stop at 300 s against its grace.
                    bad300 = [r.exit_code != 0 or (r.stopped is not None and
                                                   r.seconds - r.stopped > new300)
                              for r in runs]
                rows.append((case, rule_name, sum(bad), sum(bad300), len(runs),
                             statistics.median(r.seconds - budget for r in runs),
                             statistics.median(r.steps for r in runs)))
                print(f"  {case:20} {rule_name:10} false invalid {sum(bad)}/{len(runs)} "
                      f"(at 300 s: {sum(bad300)}/{len(runs)}); median overhead "
                      f"{rows[-1][5]:.1f}s vs {max(0.0, base.seconds - budget):.1f}s idle; "
                      f"median steps {rows[-1][6]:g} vs {base.steps} idle", flush=True)

        threshold = 1 + float(new) / budget
        # Just under the threshold a fake may still be caught: its own exit takes time too.
        fakes = args.fakes or [round(1 + 0.4 * (threshold - 1), 2), round(threshold + 0.15, 2)]
        print(f"clock fakes at {budget:g} s: every fake above {threshold:.2f}x "
              "(1 + grace / budget) is caught; one well below passes")
        for k in fakes:
            fake_repo = root / f"fake{k}"
            shutil.rmtree(fake_repo, ignore_errors=True)
            shutil.copytree(repo, fake_repo)
            train = fake_repo / "train.py"
            train.write_text(train.read_text().replace(IMPORTS, FAKE.format(k=k) + IMPORTS, 1))
            r = run_once(fake_repo, root, env, budget, new, True, hogs, None)
            caught = bool(r.violation)
            print(f"  {k:.2f}x: {'caught' if caught else 'passed'} "
                  f"(expected {'caught' if k > threshold else 'passed'}); "
                  f"{r.steps or 'killed before its summary, no'} steps vs {base.steps} honest",
                  flush=True)

    assert new300.startup_limit is not None
    worst = 1 + (new300.startup_limit - base.startup + float(new300)) / 300
    print(f"\nat a 300 s budget with this start-up ({base.startup:.1f}s) and teardown "
          f"({teardown:.1f}s): grace {new300:.1f}s, so a clock fake that keeps training is "
          f"caught above {1 + float(new300) / 300:.2f}x; one that also announces its first "
          f"step as late as allowed ({new300.startup_limit:.1f}s) above {worst:.2f}x; the "
          f"older rule caught above {1 + float(old300) / 300:.2f}x")
    total = {r: (sum(x[2] for x in rows if x[1] == r), sum(x[3] for x in rows if x[1] == r),
                 sum(x[4] for x in rows if x[1] == r)) for r in ("older rule", "stop rule")}
    for name, (n_bad, n_bad300, n) in total.items():
        print(f"false invalid, {name}: {n_bad}/{n} = {n_bad / n:.2f} at {budget:g} s; "
              f"{n_bad300}/{n} = {n_bad300 / n:.2f} projected to 300 s")


if __name__ == "__main__":
    main()
