"""The model server's loop: read token rows from a pipe, answer each with logits.

This runs inside the untrusted process (the one that imports the proposer's code), so
nothing here is a defence: it is the plumbing an honest model needs, and the reference a
task's own server command builds on. The checks live on the scorer's side (`client`,
`probes`). The pipes' fd numbers come from AUTORESEARCH_MODEL_IN (requests) and
AUTORESEARCH_MODEL_OUT (responses); stdout and stderr stay free for the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autoresearch.scoring.protocol import ProtocolError, grow_pipe, read_frame, write_frame

MODEL_IN_ENV = "AUTORESEARCH_MODEL_IN"
MODEL_OUT_ENV = "AUTORESEARCH_MODEL_OUT"
MAX_REQUEST_BYTES = 1 << 30  # token rows; a scorer sends far less


def model_fds(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(requests fd, responses fd) from the environment the harness set."""
    env = os.environ if env is None else env
    try:
        return int(env[MODEL_IN_ENV]), int(env[MODEL_OUT_ENV])
    except (KeyError, ValueError):
        raise SystemExit(f"{MODEL_IN_ENV} and {MODEL_OUT_ENV} must name the pipes' file "
                         "descriptors; the harness starts model servers (`model_server`)"
                         ) from None


def serve(model_fn: Callable[[np.ndarray], Any], fd_in: int, fd_out: int) -> int:
    """Answer requests until the scorer hangs up; returns how many were answered.

    model_fn maps int64 tokens of shape (B, T) to logits of shape (B, T, V), as anything
    numpy can convert (a CPU tensor, an array); they are sent as float32. An exception
    from model_fn propagates, so the process exits non-zero and the scorer sees a closed
    pipe instead of an answer.
    """
    for fd in (fd_in, fd_out):
        grow_pipe(fd)
    answered = 0
    while True:
        frame = read_frame(fd_in, MAX_REQUEST_BYTES)
        if frame is None:
            return answered
        op, tokens = frame
        if op != "tokens" or tokens.ndim != 2 or tokens.dtype != np.int64:
            raise ProtocolError(f"expected int64 token rows, got {op} {tokens.dtype} "
                                f"{tokens.shape}")
        logits = np.asarray(model_fn(tokens), dtype=np.float32)
        try:
            write_frame(fd_out, "logits", logits)
        except BrokenPipeError:  # the scorer is gone (it stopped early): nothing to answer
            return answered
        answered += 1
