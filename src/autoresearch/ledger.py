"""The ledger: what happened in every experiment of a tag, never lost.

Two files in ``.autoresearch/TAG/`` (ignored by git, never committed):

- ``results.jsonl`` is the source of truth: append-only, one full record per
  experiment, flushed and fsync'd before the harness moves any ref. A torn last
  line (the harness killed mid-write) is skipped on load and truncated away on
  the next append, so a resume never double-counts or chokes.
- ``results.tsv`` is Karpathy's human-readable view with exactly his columns
  (commit, <metric>, memory_gb, status, description). It is regenerated from
  the jsonl when the two disagree, so it can never drift.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATUSES = ("keep", "discard", "crash", "invalid", "timeout", "checks_failed", "interrupted",
            "duplicate", "remeasure")
# Statuses that count towards the consecutive-failure streak stop condition.
FAILURES = ("crash", "invalid", "timeout", "checks_failed")


class LedgerError(ValueError):
    """The ledger file is damaged in a way the harness must not repair by itself."""


@dataclass(frozen=True)
class Experiment:
    """One ledger row. ``metric`` is None when no trustworthy value exists."""

    id: int
    status: str
    description: str
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    holdout: float | None = None  # the metric on the holdout split; never shown to proposers
    reason: str = ""
    commit: str = ""  # the experiment's own commit (kept or preserved under discarded/N)
    parent: str = ""  # the incumbent it was compared against
    memory_gb: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    run_seconds: float = 0.0
    exit_code: int | None = None
    proposer: str = ""
    proposal: dict[str, Any] = field(default_factory=dict)  # cost, tokens, proposer meta
    diff: dict[str, Any] = field(default_factory=dict)  # files, insertions, deletions
    evidence: dict[str, Any] = field(default_factory=dict)  # decision inputs
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def cost_usd(self) -> float:
        return float(self.proposal.get("cost_usd", 0.0) or 0.0)


def _fmt_metric(value: float | None) -> str:
    return f"{value:.6f}" if value is not None and math.isfinite(value) else "0.000000"


def _tsv_line(e: Experiment) -> str:
    # Descriptions are free text: tabs and newlines would break the columns.
    desc = " ".join(e.description.split())
    short = e.commit[:7] if e.commit else "-------"
    return f"{short}\t{_fmt_metric(e.metric)}\t{e.memory_gb:.1f}\t{e.status}\t{desc}\n"


class Ledger:
    """Append-only experiment log for one tag. Holds the history in memory after load."""

    def __init__(self, directory: Path, metric_name: str):
        self.dir = directory
        self.metric_name = metric_name
        self.jsonl = directory / "results.jsonl"
        self.tsv = directory / "results.tsv"
        self.experiments: list[Experiment] = []
        self._valid_bytes = 0  # length of the jsonl prefix made of whole records
        self._stamp: tuple[tuple[int, int], ...] = ()  # (size, mtime) of both files we wrote

    @property
    def header(self) -> str:
        return f"commit\t{self.metric_name}\tmemory_gb\tstatus\tdescription\n"

    def load(self) -> list[Experiment]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.experiments = []
        self._valid_bytes = 0
        if self.jsonl.exists():
            raw = self.jsonl.read_bytes()
            offset = 0
            for number, line in enumerate(raw.splitlines(keepends=True), 1):
                if not line.endswith(b"\n"):
                    break  # torn tail: written partly when the harness died
                try:
                    self.experiments.append(Experiment.from_json(json.loads(line)))
                except (json.JSONDecodeError, TypeError) as exc:
                    # Only a torn *last* line is ours to drop; damage before it is not.
                    raise LedgerError(
                        f"{self.jsonl}, line {number}: not a ledger record ({exc}). Nothing was "
                        "changed. Repair or remove that line (keep a copy), then run again."
                    ) from None
                offset += len(line)
            self._valid_bytes = offset
        self._sync_tsv()
        self.jsonl.touch()
        self._stamp = self._stat()
        return list(self.experiments)

    def _sync_tsv(self) -> None:
        text = self.header + "".join(_tsv_line(e) for e in self.experiments)
        if not self.tsv.exists() or self.tsv.read_text(encoding="utf-8") != text:
            tmp = self.tsv.with_suffix(".tsv.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.tsv)

    def append(self, experiment: Experiment) -> None:
        """Durably record one experiment: the jsonl first (fsync), then the tsv view."""
        if experiment.status not in STATUSES:  # a bug, not an outcome: fail loudly
            raise ValueError(f"unknown ledger status {experiment.status!r}")
        line = (json.dumps(experiment.to_json(), sort_keys=True) + "\n").encode()
        with open(self.jsonl, "ab") as fh:
            if fh.tell() != self._valid_bytes:
                fh.truncate(self._valid_bytes)  # drop a torn tail before writing after it
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._valid_bytes += len(line)
        self.experiments.append(experiment)
        with open(self.tsv, "a", encoding="utf-8") as fh:
            fh.write(_tsv_line(experiment))
        self._stamp = self._stat()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, (self.jsonl, self.tsv)))

    def intact(self) -> bool:
        """True if nothing but this ledger wrote its files since; otherwise rewrite them from
        the records held here (an experiment may not edit its own history) and say so.

        Two stats, not a read: it stays as cheap at row 10,000 as at row 10.
        """
        try:
            if self._stat() == self._stamp:
                return True
        except OSError:
            pass
        text = b"".join((json.dumps(e.to_json(), sort_keys=True) + "\n").encode()
                        for e in self.experiments)
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        tmp.write_bytes(text)
        os.replace(tmp, self.jsonl)
        self._valid_bytes = len(text)
        self.tsv.unlink(missing_ok=True)
        self._sync_tsv()
        self._stamp = self._stat()
        return False

    def next_id(self) -> int:
        return self.experiments[-1].id + 1 if self.experiments else 0

    def kept(self) -> list[Experiment]:
        return [e for e in self.experiments if e.status == "keep"]

    def by_id(self, exp_id: int) -> Experiment | None:
        for e in reversed(self.experiments):
            if e.id == exp_id:
                return e
        return None
