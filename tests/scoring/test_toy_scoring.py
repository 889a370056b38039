"""Checked scoring end to end: a real scorer process and two real model server processes,
wired with pipes as the harness wires them, against honest and cheating toy models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from . import toy_scorer, toy_server
from .wiring import Wired, run_wired

HERE = Path(__file__).resolve().parent


def score(mode: str, mode1: str | None = None) -> Wired:
    """The toy scorer against server 0 in `mode` and server 1 in `mode1` (default: the same)."""
    servers = [[sys.executable, "toy_server.py", m] for m in (mode, mode1 or mode)]
    return run_wired([sys.executable, "toy_scorer.py"], servers, scorer_cwd=HERE,
                     server_cwd=HERE, env=dict(os.environ), timeout=60)


def honest_score() -> float:
    nats = [-np.log(np.exp(toy_server.W[x].astype(np.float64)) /
                    np.exp(toy_server.W[x].astype(np.float64)).sum(-1, keepdims=True))
            for x, _ in toy_scorer.batches()]
    total = sum(float(np.take_along_axis(n, y[..., None], -1).sum())
                for n, (_, y) in zip(nats, toy_scorer.batches()))
    return total / (toy_scorer.N * toy_scorer.B * toy_scorer.T)


@pytest.mark.parametrize("mode", ["honest", "padded"])
def test_an_honest_model_scores_what_its_logits_give(mode: str) -> None:
    result = score(mode)
    assert result.returncode == 0, result.output + "".join(result.server_logs)
    value = float(result.stdout.split("score: ")[1])
    assert value == pytest.approx(honest_score(), rel=1e-9)
    assert result.server_codes == (0, 0)  # both saw EOF and exited cleanly


@pytest.mark.parametrize("mode, reason", [
    ("future", "sees the future"),
    ("inflate", "sees the future"),  # one huge logit does not buy a wider tolerance
    ("rows", "rows of a batch leak into each other"),
])
def test_a_model_that_peeks_is_caught_by_the_probes(mode: str, reason: str) -> None:
    result = score(mode)
    assert result.returncode == 3, result.output
    assert result.stdout.startswith("integrity: ") and reason in result.stdout
    assert "score:" not in result.stdout


@pytest.mark.parametrize("mode, where", [
    ("learn", "a probe copy of batch"),  # moves from its second request on: a probe sees it
    ("shift", "between a fresh process and position"),  # a reference, early on one, late on other
    ("memo", "between a fresh process and position"),  # passes the probes; server 1 differs
])
def test_a_model_whose_outputs_depend_on_history_is_caught(mode: str, where: str) -> None:
    result = score(mode)
    assert result.returncode == 3, result.output
    assert "integrity: the model's outputs depend on what it was sent before" in result.stdout
    assert where in result.stdout, result.stdout


def test_a_model_that_cheats_only_on_the_scoring_server_is_caught() -> None:
    # Server 0 honest, server 1 peeking: as if the model could tell the two processes apart.
    result = score("honest", "future")
    assert result.returncode == 3, result.output
    assert "depend on what it was sent before" in result.stdout


@pytest.mark.parametrize("mode, message", [
    ("wrong_shape", "logits of shape (4, 15, 64), expected (4, 16, V) with 64 <= V <= 128"),
    ("wide", "logits of shape (4, 16, 256)"),
    ("nan", "request 2: the logits are not all finite"),
    ("crash", "request 3: the server closed its pipe without answering"),
    ("int_logits", "expected float32 logits, got a int64 logits frame"),
    ("garbage", "not a frame"),
])
def test_a_broken_server_is_a_crash_with_a_clear_message(mode: str, message: str) -> None:
    result = score(mode)
    assert result.returncode == 1, result.output
    assert "model server 0, request" in result.stderr and message in result.stderr, result.stderr
    assert "score:" not in result.stdout and "integrity" not in result.stdout


def test_the_main_pass_server_failing_is_a_crash_too() -> None:
    result = score("honest", "nan")
    assert result.returncode == 1
    assert "model server 1, request 2: the logits are not all finite" in result.stderr
