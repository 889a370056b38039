"""train.py honours the harness's stop: a real training run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpt_fixtures import copy_template, parse_summary, prepared_cache

from autoresearch.execution.budget import MARKER, STOP_ENV

pytest.importorskip("torch")
pytest.importorskip("rustbpe")
pytestmark = pytest.mark.slow


def test_train_py_announces_its_first_step_and_stops_at_the_stop_file(tmp_path: Path) -> None:
    cache = prepared_cache(tmp_path)
    repo = copy_template(tmp_path / "repo", CPU_DEPTH="2", CPU_DEVICE_BATCH_SIZE="16",
                         CPU_TOTAL_BATCH_SIZE="1024")
    stop = tmp_path / "stop"
    stop.write_text("")  # time is already up: it stops at its first timed step
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_PROFILE": "tiny",
           "AUTORESEARCH_TIME_BUDGET": "600", "AUTORESEARCH_DEVICE": "cpu",
           STOP_ENV: str(stop)}
    res = subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert MARKER + "\n" in res.stdout
    # One untimed step on CPU, then one timed step: far short of a 600 s budget.
    assert int(parse_summary(res.stdout)["num_steps"]) == 2
