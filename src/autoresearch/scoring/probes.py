"""Scoring a "token rows -> logits" model that may cheat, from two fresh processes.

The scorer holds the evaluation batches and talks to two fresh model servers, which run
the candidate's code but hold no evaluation data. `CheckedScoring.score` does, in order:

1. **Server 0, probes.** For P probe batches X (real evaluation batches), it first sends
   a copy of X whose tokens after a random position t are random, then a copy whose rows
   1.. are random, and only then X itself. Logits up to t must match X's (causality), and
   so must row 0's (rows do not leak into each other). The copies go first, so a model
   that remembers earlier inputs has seen nothing of X's future when it answers them.
   On a mismatch the copy is sent once more: if the answer moved, the model's outputs
   depend on its history, which is what the message then says.
2. **Server 0, references.** K batches (the probe batches among them) are answered on a
   nearly fresh process, and a digest of each answer is kept.
3. **Server 1, the score.** Every batch, once, in a random order (os.urandom-seeded),
   with the references at random positions and one of them (the first probe batch) at
   the very end. Each reference's answer must match server 0's. Only this pass's
   answers are scored, so a model that learns from the evaluation data as it is sent
   ("trains during evaluation"), memoizes rows, or switches behaviour after some number of
   calls shows up as a reference that moved. A model that behaves on server 0's probe
   batches only does not know which batches those were: server 1 never sees the copies.

Sizes: K = max(2, ceil(N / 4)) and P = max(2, ceil(N / 16)) of N batches (at most N).
The digest is the per-token cross-entropy (everything the score depends on) plus the
logits at a few secretly sampled columns: keeping whole logits would take K x 512 MiB on
the GPU profile.

Tolerance: max |a - b| <= rel_tol * (1 + min(max |logits|, SCALE_CAP)), on the logits (the
cross-entropy, a difference of two logit-scale terms, gets twice that). The cap keeps a
model from widening its own tolerance with one huge logit (a column at -1e6 costs it
nothing in softmax); typical logits are far below it (the template soft-caps at 15). The
tolerance is also the largest leak that goes unseen, so it is kept to float noise:
- CPU, fp32 (CPU_FP32_TOL = 1e-4): the template's default CPU GPT (depth 4, a batch of
  8 x 256, random weights, max |logit| 3.2) gave bit-identical logits for the same batch
  in two processes, with 1 and 2 threads, for a prefix under five different futures, and
  for row 0 beside different rows (max |diff| 0.0, torch 2.13); 1e-4 leaves room for
  kernels that reduce in a data-dependent order.
- CUDA bf16 autocast, and MPS (ACCELERATOR_TOL = 2e-2): bf16 rounds at about 1/128 of a
  value; this is the previous in-process probe's figure, not re-measured here (no GPU).
  It allows 0.32 logits at the template's softcap of 15: a GPU measurement (same-shape
  kernels are usually deterministic, so likely 0) should tighten it.

What this does not cover: two servers that talk to each other (a shared writable file,
say) could tell server 1 which batches server 0 saw; the harness's sandbox must keep them
apart and without persistent storage. A model that cheats on a random fraction f of
server 1's batches escapes with probability about (1 - f) ** K for history dependence and
(1 - f) ** P for peeking at the future (it can count its calls and spare the last one,
so the other references carry that). Leaks within the tolerance go unseen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoresearch.scoring.client import ModelClient

CPU_FP32_TOL = 1e-4
ACCELERATOR_TOL = 2e-2
SCALE_CAP = 50.0
SAMPLED_COLUMNS = 16

Batch = tuple[np.ndarray, np.ndarray]  # (inputs, targets), both int (B, T)
NatsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (logits, targets) -> (B, T) nats


class IntegrityError(Exception):
    """The model broke a rule of the evaluation; the message says which."""


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-token nats, -log softmax(logits)[target], in numpy (float64 inside)."""
    z = logits.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0]
    return lse - np.take_along_axis(z, targets[..., None].astype(np.int64), axis=-1)[..., 0]


@dataclass(frozen=True)
class Plan:
    """Who sees what, in which order (batch indices into the evaluation batches)."""

    probes: tuple[int, ...]  # probed on server 0, in this order; probes[0] == order[-1]
    references: tuple[int, ...]  # server 0's answers, in the order asked (probes first)
    order: tuple[int, ...]  # server 1's pass: every batch once

    @classmethod
    def make(cls, n: int, rng: np.random.Generator) -> Plan:
        k = min(n, max(2, math.ceil(n / 4)))
        p = min(k, max(2, math.ceil(n / 16)))
        refs = [int(i) for i in rng.permutation(n)[:k]]
        last = refs[0]  # the batch server 1 sees last is probed first on server 0
        order = [int(i) for i in rng.permutation(n) if i != last] + [last]
        return cls(tuple(refs[:p]), tuple(refs), tuple(order))


@dataclass(frozen=True)
class Digest:
    """What is kept of a reference answer: enough to tell whether it moved."""

    nats: np.ndarray  # (B, T) cross-entropy of each target
    columns: np.ndarray  # (B, T, S) logits at the sampled columns
    scale: float  # max |logit| over the scored columns


def _scale(logits: np.ndarray) -> float:
    """max |logit|, capped: what the tolerance scales with (see the module docstring)."""
    return min(float(max(-logits.min(), logits.max())), SCALE_CAP)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|, row by row so the temporaries stay small."""
    if a.size == 0:
        return 0.0
    return max(float(np.abs(a[i].astype(np.float64) - b[i]).max()) for i in range(len(a)))


class CheckedScoring:
    """Score batches on main_server after probing and referencing them on probe_server.

    nats turns (logits, targets) into per-token cross-entropy: the caller's own function
    (the GPT template passes its metric's), so the digests compare the numbers it scores.
    """

    def __init__(self, probe_server: ModelClient, main_server: ModelClient, vocab: int,
                 rel_tol: float, nats: NatsFn = cross_entropy, seed: int | None = None):
        self.probe_server, self.main_server = probe_server, main_server
        self.vocab, self.rel_tol, self.nats = vocab, rel_tol, nats
        self.rng = np.random.default_rng(
            int.from_bytes(os.urandom(16), "big") if seed is None else seed)
        k = min(SAMPLED_COLUMNS, vocab)
        self.columns = np.sort(self.rng.choice(vocab, size=k, replace=False))
        self.plan: Plan | None = None

    def tol(self, scale: float) -> float:
        return self.rel_tol * (1.0 + scale)

    def score(self, batches: Sequence[Batch]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (batch index, per-token nats) for every batch, from server 1's pass.

        Raises IntegrityError on a broken rule, before the pass ends: a caller that sums
        the yielded nats has no result unless the whole pass got through.
        """
        if not batches:
            raise ValueError("no batches to score")
        self.plan = plan = Plan.make(len(batches), self.rng)
        digests = {k: self._reference(k, batches[k], k in plan.probes) for k in plan.references}
        self.probe_server.close()  # it exits and frees its memory before the long pass
        n = len(plan.order)
        for pos, k in enumerate(plan.order, 1):
            x, y = batches[k]
            logits = self.main_server.logits(x, self.vocab)[..., : self.vocab]
            nats = self.nats(logits, y)
            if k in digests:
                self._compare(k, digests[k], self._digest(logits, nats), pos, n)
            yield k, nats

    # -- server 0 --------------------------------------------------------------------

    def _ask(self, tokens: np.ndarray) -> np.ndarray:
        return self.probe_server.logits(tokens, self.vocab)[..., : self.vocab]

    def _digest(self, logits: np.ndarray, nats: np.ndarray) -> Digest:
        return Digest(np.asarray(nats, dtype=np.float64), logits[..., self.columns].copy(),
                      _scale(logits))

    def _reference(self, k: int, batch: Batch, probe: bool) -> Digest:
        x, y = batch
        logits = self._probe(k, x) if probe else self._ask(x)
        return self._digest(logits, self.nats(logits, y))

    def _probe(self, k: int, x: np.ndarray) -> np.ndarray:
        """Send perturbed copies of x, then x; check them; return x's logits."""
        B, T = x.shape
        # (copy, its logits, the part that must match, what a leak means)
        copies: list[tuple[np.ndarray, np.ndarray, Any, str]] = []
        if T >= 2:
            t = int(self.rng.integers(0, T - 1))  # keep positions 0..t, replace t+1..
            future = x.copy()
            future[:, t + 1:] = self.rng.integers(0, self.vocab, size=(B, T - t - 1))
            copies.append((future, self._ask(future), np.s_[:, : t + 1],
                           f"logits at positions 0..{t} of batch {k} change by {{d:.3g}} when "
                           "later tokens change: the model sees the future"))
        if B >= 2:
            rows = x.copy()
            rows[1:] = self.rng.integers(0, self.vocab, size=(B - 1, T))
            copies.append((rows, self._ask(rows), np.s_[:1],
                           f"row 0's logits in batch {k} change by {{d:.3g}} when other rows "
                           "change: rows of a batch leak into each other"))
        logits = self._ask(x)
        tol = self.tol(max(_scale(logits), *(_scale(answer) for _, answer, _, _ in copies)))
        for copy, answer, part, leak in copies:
            d = _max_diff(answer[part], logits[part])
            if d > tol:
                again = self._ask(copy)  # the same question twice: is it history?
                moved = _max_diff(again, answer)
                if moved > self.tol(max(_scale(again), _scale(answer))):
                    raise IntegrityError(
                        "the model's outputs depend on what it was sent before (a probe copy "
                        f"of batch {k} differs by {moved:.3g} when sent again, at request "
                        f"{self.probe_server.calls} of a fresh process)")
                raise IntegrityError(leak.format(d=d))
        return logits

    # -- server 1 --------------------------------------------------------------------

    def _compare(self, k: int, fresh: Digest, now: Digest, pos: int, n: int) -> None:
        tol = self.tol(max(fresh.scale, now.scale))
        d_cols = _max_diff(fresh.columns, now.columns)
        d_nats = _max_diff(fresh.nats, now.nats)
        if d_cols > tol or d_nats > 2 * tol:
            raise IntegrityError(
                "the model's outputs depend on what it was sent before (batch "
                f"{k} differs by {max(d_cols, d_nats):.3g} between a fresh process and "
                f"position {pos} of {n})")
