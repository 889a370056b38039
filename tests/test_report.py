"""Report data is computed apart from rendering, so it can be checked exactly."""

from __future__ import annotations

from autoresearch.ledger import Experiment
from autoresearch.task import MetricSpec
from autoresearch.ui.report import progress_data, summarize

ROWS = [
    Experiment(0, "keep", "baseline", 1.0, proposer="baseline", started=0, finished=300),
    Experiment(1, "discard", "a", 1.1, proposer="sweep", started=300, finished=600),
    Experiment(2, "keep", "b", 0.9, proposer="sweep", started=600, finished=900),
    Experiment(3, "crash", "c", None, proposer="sweep", started=900, finished=1000),
    Experiment(4, "remeasure", "r", 0.91, proposer="harness", started=1000, finished=1300),
    Experiment(5, "keep", "d", 0.8, proposer="sweep", started=1300, finished=1800),
]


def test_summarize() -> None:
    s = summarize(ROWS)
    assert (s.experiments, s.kept, s.baseline, s.best, s.best_id) == (4, 2, 1.0, 0.8, 5)
    assert s.keep_rate == 0.5
    assert s.per_hour == 5 / 0.5  # 5 runs (re-measures excluded) in half an hour
    assert s.by_status == {"keep": 3, "discard": 1, "crash": 1, "remeasure": 1}


def test_progress_data_running_best() -> None:
    d = progress_data(ROWS, MetricSpec("m", "minimize"))
    assert d.x == [0, 1, 2, 5]
    assert d.kept == [True, False, True, True]
    assert list(zip(d.best_x, d.best_y)) == [(0, 1.0), (1, 1.0), (2, 0.9), (5, 0.8)]


def test_holdout_is_reported_beside_val() -> None:
    from dataclasses import replace

    rows = [replace(ROWS[0], holdout=1.2), *ROWS[1:5], replace(ROWS[5], holdout=1.15)]
    s = summarize(rows)
    assert (s.baseline_holdout, s.best_holdout) == (1.2, 1.15)
    d = progress_data(rows, MetricSpec("m", "minimize"))
    assert list(zip(d.holdout_x, d.holdout_y)) == [(0, 1.2), (5, 1.15)]


def test_log_mode_shows_a_heartbeat_during_long_runs() -> None:
    import io

    from rich.console import Console

    from autoresearch.ui.display import Display

    out = io.StringIO()
    display = Display(MetricSpec("m", "minimize"), budget=100, console=Console(file=out))
    assert not display.live_mode  # not a terminal: plain lines
    display.start(3, "raise the learning rate")
    for t in (0.0, 10.0, 21.0, 22.0, 45.0):
        display.tick(t)
    lines = out.getvalue().splitlines()
    assert lines == ["[exp 3] running: raise the learning rate", "  ... 21s of 100s",
                     "  ... 45s of 100s"]
