"""The scorer's end of a model server's pipes: send token rows, get checked logits back.

The harness starts the model servers and passes their pipes in AUTORESEARCH_MODEL_FDS as
"r0,w0;r1,w1": for model server k the scorer writes requests to wk and reads responses
from rk. Everything a server sends is checked here before anyone uses it: the frame (see
`protocol`), the shape (exactly B x T x V with min_columns <= V <= max_columns, which bounds
what the scorer allocates), the dtype and finiteness. A server that dies, hangs up, or
answers out of protocol raises ModelServerError: a crash of the evaluation, not a score.

What this does not cover: a server that never answers blocks `logits` forever; the
harness's time limit on the evaluate phase is what ends that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from autoresearch.scoring.protocol import (
    ProtocolError,
    grow_pipe,
    read_body,
    read_header,
    write_frame,
)

MODEL_FDS_ENV = "AUTORESEARCH_MODEL_FDS"


class ModelServerError(Exception):
    """A model server died, hung up, or sent a malformed response; the message says which."""


class ModelClient:
    """One model server, seen from the scorer: `logits(tokens)` per request, in order."""

    def __init__(self, fd_in: int, fd_out: int, name: str = "model server"):
        self.fd_in, self.fd_out, self.name = fd_in, fd_out, name
        self.calls = 0  # requests answered so far
        self.closed = False
        for fd in (fd_in, fd_out):
            grow_pipe(fd)

    def logits(self, tokens: np.ndarray, min_columns: int,
               max_columns: int | None = None) -> np.ndarray:
        """Float32 logits of shape (B, T, V) for int64 tokens of shape (B, T).

        V must lie in [min_columns, max_columns] (max_columns defaults to twice
        min_columns, room for a padded vocabulary); the first min_columns columns, the
        ones a scorer uses, must be finite. Columns past them may be -inf (masked padding).
        """
        if self.closed:
            raise ModelServerError(f"{self.name}: already closed")
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens must be a 2-D integer array, got {tokens.dtype} "
                             f"{tokens.shape}")
        B, T = tokens.shape
        max_columns = max_columns or 2 * min_columns
        call = self.calls + 1
        where = f"{self.name}, request {call}"
        try:
            write_frame(self.fd_out, "tokens", tokens.astype(np.int64, copy=False))
            header = read_header(self.fd_in)
            if header is None:
                raise ModelServerError(f"{where}: the server closed its pipe without "
                                       "answering (it exited or crashed; see its log)")
            if header.op != "logits" or header.dtype != "float32":
                raise ModelServerError(f"{where}: expected float32 logits, got a "
                                       f"{header.dtype} {header.op} frame")
            shape = header.shape
            if len(shape) != 3 or shape[:2] != (B, T) or \
                    not min_columns <= shape[2] <= max_columns:
                raise ModelServerError(
                    f"{where}: logits of shape {shape}, expected ({B}, {T}, V) with "
                    f"{min_columns} <= V <= {max_columns}")
            logits = read_body(self.fd_in, header, B * T * max_columns * 4)
        except ProtocolError as e:
            raise ModelServerError(f"{where}: {e}") from None
        except OSError as e:  # EPIPE: the server is gone
            raise ModelServerError(f"{where}: {e.strerror or e} (did the server exit?)") from None
        used = logits[..., :min_columns]
        # min and max propagate NaN and show +-inf, with no temporary the size of the array.
        if not (np.isfinite(used.min()) and np.isfinite(used.max())):
            raise ModelServerError(f"{where}: the logits are not all finite (NaN or inf)")
        self.calls = call
        return logits

    def close(self) -> None:
        """Hang up: the server sees EOF and exits."""
        if not self.closed:
            self.closed = True
            for fd in (self.fd_out, self.fd_in):
                try:
                    os.close(fd)
                except OSError:
                    pass


def parse_model_fds(text: str) -> list[tuple[int, int]]:
    """"r0,w0;r1,w1" -> [(r0, w0), (r1, w1)]: (read responses, write requests) per server."""
    pairs = []
    for part in text.split(";"):
        fields = part.split(",")
        if len(fields) != 2 or not all(f.strip().isdigit() for f in fields):
            raise ValueError(f"{MODEL_FDS_ENV}={text!r}: expected 'r0,w0;r1,w1'")
        pairs.append((int(fields[0]), int(fields[1])))
    return pairs


def connect_models(env: Mapping[str, str] | None = None,
                   expect: int | None = None) -> list[ModelClient]:
    """The model servers the harness started for this process, from AUTORESEARCH_MODEL_FDS."""
    env = os.environ if env is None else env
    text = env.get(MODEL_FDS_ENV)
    if not text:
        raise ModelServerError(f"{MODEL_FDS_ENV} is not set: the harness starts the model "
                               "servers (the task's `model_server`) and passes their pipes")
    try:
        pairs = parse_model_fds(text)
    except ValueError as e:
        raise ModelServerError(str(e)) from None
    if expect is not None and len(pairs) != expect:
        raise ModelServerError(f"{MODEL_FDS_ENV}={text!r}: {len(pairs)} model server(s), "
                               f"expected {expect}")
    return [ModelClient(r, w, f"model server {k}") for k, (r, w) in enumerate(pairs)]
