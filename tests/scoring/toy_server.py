"""A tiny numpy "token rows -> logits" model server: honest, or cheating as argv[1] says.

The honest model is a fixed bigram table: logits[b, t] = W[x[b, t]]. Each cheat is one
way a model can game a scorer that trusts it too much; see MODES.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from autoresearch.scoring import model_fds, serve
from autoresearch.scoring.protocol import read_frame, write_frame

V = 64
W = np.random.default_rng(0).normal(size=(V, V)).astype(np.float32)
MODES = {
    "honest": "the bigram table",
    "padded": "honest, with 8 extra columns of -inf after the vocabulary",
    "future": "position t also sees token t+1 (a leak from the future)",
    "rows": "row b also sees row b+1 at the same position (rows leak)",
    "learn": "adds log-counts of every token it was sent before (trains on the eval data)",
    "shift": "honest for the first 3 requests, then shifted",
    "memo": "sees the future, but replays its earlier answer for a row prefix it has seen",
    "inflate": "sees the future, and puts -1e6 on one column to widen the tolerance",
    "wrong_shape": "drops the last position",
    "wide": "answers with 4x the vocabulary's columns",
    "nan": "a NaN in its second answer",
    "crash": "exits in the middle of its third request",
    "int_logits": "answers with an int64 frame",
    "garbage": "answers with bytes that are not a frame",
}


class Model:
    def __init__(self, mode: str):
        self.mode, self.calls = mode, 0
        self.seen = np.zeros(V)
        self.memo: list[tuple[np.ndarray, np.ndarray]] = []

    def peek(self, x: np.ndarray) -> np.ndarray:
        out = W[x].copy()
        for b in range(x.shape[0]):
            out[b, np.arange(x.shape[1] - 1), x[b, 1:]] += 4.0
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        B, T = x.shape
        out = W[x].copy()
        if self.mode == "padded":
            out = np.concatenate([out, np.full((B, T, 8), -np.inf, np.float32)], axis=-1)
        elif self.mode == "future":
            out = self.peek(x)
        elif self.mode == "inflate":
            out = self.peek(x)
            out[..., V - 1] = -1e6
        elif self.mode == "rows":
            for b in range(B):
                out[b, np.arange(T), x[(b + 1) % B]] += 4.0
        elif self.mode == "learn":
            out += 0.5 * np.log1p(self.seen).astype(np.float32)
            self.seen += np.bincount(x.ravel(), minlength=V)
        elif self.mode == "shift" and self.calls > 3:
            out[..., : V // 2] += 1.0
        elif self.mode == "memo":
            out = self.peek(x)
            for b in range(B):
                best, cached = 0, None
                for row, logits in self.memo:
                    same = np.cumprod(row == x[b])
                    if same.sum() > best:
                        best, cached = int(same.sum()), logits
                if cached is not None:
                    out[b, :best] = cached[:best]
            self.memo.extend((x[b].copy(), out[b].copy()) for b in range(B))
        elif self.mode == "wrong_shape":
            out = out[:, :-1]
        elif self.mode == "wide":
            out = np.tile(out, (1, 1, 4))
        elif self.mode == "nan" and self.calls == 2:
            out[0, 0, 0] = np.nan
        elif self.mode == "crash" and self.calls == 3:
            sys.exit(5)
        return out


def main() -> None:
    mode = sys.argv[1]
    assert mode in MODES, mode
    fd_in, fd_out = model_fds()
    if mode in ("int_logits", "garbage"):
        frame = read_frame(fd_in, 1 << 20)
        assert frame is not None
        if mode == "garbage":
            os.write(fd_out, b"HTTP/1.1 200 OK\r\n\r\n" + os.urandom(64))
        else:
            write_frame(fd_out, "logits", W[frame[1]].astype(np.int64))
        return
    serve(Model(mode), fd_in, fd_out)


if __name__ == "__main__":
    main()
