"""The benchmark (protected): time `solution.sort` and print the metric as METRIC lines.

Fresh inputs every round (a cache of past answers cannot help), every answer checked
against `sorted` outside the timed region, and timing stops at half the budget the
harness gives in AUTORESEARCH_TIME_BUDGET.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

import solution

SIZE, PER_ROUND, MAX_ROUNDS = 2000, 10, 50


def main() -> None:
    budget = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "10"))
    deadline = time.perf_counter() + 0.5 * budget
    times: list[float] = []
    while not times or (time.perf_counter() < deadline and len(times) < MAX_ROUNDS):
        rng = random.Random(len(times))  # the same inputs for every experiment
        cases = [[rng.randrange(-10**6, 10**6) for _ in range(SIZE)] for _ in range(PER_ROUND)]
        t0 = time.perf_counter()
        answers = [solution.sort(list(case)) for case in cases]
        times.append((time.perf_counter() - t0) / PER_ROUND)
        if any(got != sorted(case) for got, case in zip(answers, cases)):
            print("solution.sort returned a wrong answer", file=sys.stderr)
            sys.exit(1)
    print(f"METRIC ms_per_sort={statistics.median(times) * 1000:.4f}")
    print(f"METRIC rounds={len(times)}")


if __name__ == "__main__":
    main()
