"""A tiny scorer for toy_server.py: checked scoring of random token batches.

Prints `score: <mean nats per token>` and exits 0; `integrity: <reason>` and exits 3 on a
broken rule; a model server failure exits 1 with its message on stderr.
"""

from __future__ import annotations

import sys

import numpy as np

from autoresearch.scoring import (
    CPU_FP32_TOL,
    CheckedScoring,
    IntegrityError,
    ModelServerError,
    connect_models,
)

V, B, T, N = 64, 4, 16, 12
INTEGRITY_EXIT = 3


def batches(seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """N batches of (inputs, targets) cut from random rows of T + 1 tokens."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, V, size=(B, T + 1)) for _ in range(N)]
    return [(r[:, :-1], r[:, 1:]) for r in rows]


def main() -> None:
    data = batches()
    total, count = 0.0, 0
    try:
        probe_server, main_server = connect_models(expect=2)
        session = CheckedScoring(probe_server, main_server, V, CPU_FP32_TOL)
        for _, nats in session.score(data):
            total += float(nats.sum())
            count += nats.size
    except IntegrityError as e:
        print(f"integrity: {e}")
        sys.exit(INTEGRITY_EXIT)
    except ModelServerError as e:
        sys.exit(str(e))
    print(f"score: {total / count!r}")


if __name__ == "__main__":
    main()
