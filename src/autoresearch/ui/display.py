"""What `autoresearch run` shows while it works.

On a terminal: a live status line (runs, kept, best and its change from the
baseline) over a progress bar of the running experiment's elapsed time against
its budget. Elsewhere (CI, `nohup`, a log file): one plain line per event, so
an overnight log stays readable.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from autoresearch.ledger import Experiment
from autoresearch.task import MetricSpec

_STYLE = {"keep": "green", "discard": "dim", "crash": "red", "timeout": "red",
          "invalid": "yellow", "checks_failed": "yellow", "duplicate": "dim",
          "interrupted": "magenta", "remeasure": "cyan"}


class Display:
    def __init__(self, metric: MetricSpec, budget: float, console: Console | None = None):
        self.metric = metric
        self.budget = budget
        self.console = console or Console(stderr=True)
        self.live_mode = self.console.is_terminal
        self.runs = self.kept = 0
        self.baseline: float | None = None
        self.best: float | None = None
        self._progress: Progress | None = None
        self._live: Live | None = None
        self._task_id: TaskID | None = None
        self._last_tick = 0.0
        self._next_beat = 0.0

    def seed(self, history: list[Experiment]) -> None:
        for exp in history:
            self._count(exp)

    def _count(self, exp: Experiment) -> None:
        self.runs += 1
        if exp.status == "keep" and exp.metric is not None:
            self.kept += 1
            if self.baseline is None:
                self.baseline = exp.metric
            self.best = exp.metric

    def headline(self) -> str:
        best = "-" if self.best is None else f"{self.best:.6f}"
        delta = ""
        if self.best is not None and self.baseline is not None:
            delta = f" ({self.best - self.baseline:+.6f} vs baseline)"
        return f"runs {self.runs}  kept {self.kept}  best {self.metric.name} {best}{delta}"

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def start(self, exp_id: int, description: str) -> None:
        desc = description if len(description) < 60 else description[:57] + "..."
        if not self.live_mode:
            self.message(escape(f"[exp {exp_id}] running: {desc}"))
            self._next_beat = 0.0
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[clock]}"),
            TimeElapsedColumn(), console=self.console, transient=True)
        self._task_id = self._progress.add_task(escape(f"[exp {exp_id}] {desc}"), total=self.budget,
                                                clock=f"0/{self.budget:.0f}s")
        self._live = Live(self._progress, console=self.console, refresh_per_second=4,
                          transient=True)
        self._live.start()
        self._progress.console.print(self.headline(), style="bold", highlight=False)

    def tick(self, elapsed: float) -> None:
        if not self.live_mode:  # a log file: a heartbeat line now and then, not a bar
            every = max(15.0, self.budget / 5)
            if elapsed >= self._next_beat:
                if self._next_beat > 0:
                    self.message(f"  ... {elapsed:.0f}s of {self.budget:.0f}s")
                self._next_beat = (elapsed // every + 1) * every
            return
        if self._progress is None or self._task_id is None:
            return
        now = time.monotonic()
        if now - self._last_tick < 0.25:
            return
        self._last_tick = now
        self._progress.update(self._task_id, completed=min(elapsed, self.budget),
                              clock=f"{elapsed:.0f}/{self.budget:.0f}s")

    def stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
        self._live = self._progress = None
        self._task_id = None

    def finish(self, exp: Experiment) -> None:
        self.stop_live()
        self._count(exp)
        value = "-" if exp.metric is None else f"{exp.metric:.6f}"
        style = _STYLE.get(exp.status, "white")
        reason = exp.reason.splitlines()[0] if exp.reason else ""
        line = (escape(f"[exp {exp.id}]")
                + f" [{style}]{exp.status:<13}[/{style}] {self.metric.name} {value}"
                f"  {escape(exp.description[:60])}"
                + (f"  ({escape(reason[:100])})" if reason else ""))
        self.console.print(line, highlight=False)
        self.console.print("  " + self.headline(), style="dim", highlight=False)
        sys.stderr.flush()
