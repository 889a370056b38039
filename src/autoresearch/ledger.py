"""The ledger: what happened in every experiment of a tag, never lost.

Two files in ``.autoresearch/TAG/`` (ignored by git, never committed):

- ``results.jsonl`` is the source of truth: append-only, one full record per
  experiment, flushed and fsync'd before the harness moves any ref. A torn last
  line (the harness killed mid-write) is skipped on load and truncated away on
  the next append, so a resume never double-counts or chokes.
- ``results.tsv`` is Karpathy's human-readable view with exactly his columns
  (commit, <metric>, memory_gb, status, description). It is regenerated from
  the jsonl when the two disagree, so it can never drift.

With a key (`autoresearch.integrity.seal`), every jsonl line is sealed into a chain and `load`
refuses a ledger whose chain breaks: a forged `keep` is never adopted. Without one
(`status`, `report`, tests) records are read as found and written unsealed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from autoresearch.integrity import seal

STATUSES = ("keep", "discard", "crash", "invalid", "timeout", "checks_failed", "interrupted",
            "duplicate", "remeasure", "pruned", "stale")
# Statuses that count towards the consecutive-failure streak stop condition.
FAILURES = ("crash", "invalid", "timeout", "checks_failed")


class LedgerError(ValueError):
    """The ledger file is damaged in a way the harness must not repair by itself."""

    def __init__(self, message: str, problem: str = ""):
        super().__init__(message)
        self.problem = problem or message  # what is wrong, without what to do about it


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
    worker: str = ""  # the executor slot that ran it ("" when the loop ran it in sequence)
    node: str = ""  # the cluster node that ran it (Ray backend only)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Experiment:
        # Unknown keys are dropped: the line's `seal` belongs to the file, not the record.
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
    """Append-only experiment log for one tag. Holds the history in memory after load.

    With `key_path` (`seal.key_path(git_dir, tag)`) the ledger is sealed: `read` and `load`
    verify the whole chain and `append` seals each line; the key is made on the first
    append. Without it, records are read as found and appended unsealed.
    """

    def __init__(self, directory: Path, metric_name: str, key_path: Path | None = None):
        self.dir = directory
        self.metric_name = metric_name
        self.key_path = key_path
        self.jsonl = directory / "results.jsonl"
        self.tsv = directory / "results.tsv"
        self.experiments: list[Experiment] = []
        self.verified = False  # the last read checked every record against the key
        self._key: bytes | None = None
        self._seal = ""  # the last record's seal: the next one chains on it
        self._tail = b""  # the last whole line as written: intact() compares it
        self._valid_bytes = 0  # length of the jsonl prefix made of whole records
        self._stamp: tuple[tuple[int, int], ...] = ()  # (size, mtime) of both files we wrote

    @property
    def header(self) -> str:
        return f"commit\t{self.metric_name}\tmemory_gb\tstatus\tdescription\n"

    def read(self) -> list[Experiment]:
        """Parse the records (and verify them, with a key); write nothing. A torn last line
        is skipped. Raises LedgerError on anything else that is not a whole, valid record."""
        raw = self.jsonl.read_bytes() if self.jsonl.exists() else b""
        rows: list[tuple[int, dict[str, Any]]] = []
        experiments: list[Experiment] = []
        offset, tail = 0, b""
        for number, line in enumerate(raw.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):
                break  # torn tail: written partly when the harness died
            try:
                data = json.loads(line)
                experiments.append(Experiment.from_json(data))
            except (ValueError, TypeError, AttributeError) as exc:
                # Only a torn *last* line is ours to drop; damage before it is not.
                if self.key_path is not None:
                    raise self._refused(f"line {number} is not a ledger record ({exc})") from None
                raise LedgerError(
                    f"{self.jsonl}, line {number}: not a ledger record ({exc}). Nothing was "
                    "changed. Repair or remove that line (keep a copy), then run again."
                ) from None
            rows.append((number, data))
            offset += len(line)
            tail = line
        self._key, self._seal = self._verify(rows, experiments) if self.key_path else (None, "")
        self.verified = self.key_path is not None
        self.experiments, self._valid_bytes, self._tail = experiments, offset, tail
        return list(experiments)

    def _verify(self, rows: list[tuple[int, dict[str, Any]]], experiments: list[Experiment]
                ) -> tuple[bytes | None, str]:
        """The key and the last seal of a chain that holds; else LedgerError naming the
        first record that does not. Each record's seal is popped from its row."""
        assert self.key_path is not None
        key = seal.read_key(self.key_path)
        head = seal.read_head(seal.head_path(self.key_path))
        if not rows:
            if head is not None and head.count:
                raise self._refused(f"has no records, but the harness wrote {head.count}: "
                                    "they were deleted")
            if key is None and self.key_path.exists():
                raise self._refused(f"its key {self.key_path} is not a key")
            return key, ""
        where = [f"line {n} (experiment {e.id})" for (n, _), e in zip(rows, experiments)]
        if key is None:
            raise self._refused(f"{where[0]}: the key {self.key_path} is missing or unreadable, "
                                "so no record can be verified")
        if not any("seal" in data for _, data in rows):
            raise self._refused(f"{where[0]}: the ledger predates sealing (an earlier "
                                "autoresearch wrote it), so no record can be verified")
        previous, seals = "", []
        for i, (_, data) in enumerate(rows):
            found = data.pop("seal", None)
            if not seal.matches(key, previous, data, found):
                what = "has no seal" if found is None else "does not verify"
                raise self._refused(f"{where[i]} {what}: it was edited, inserted or moved, or "
                                    "a record before it was deleted")
            previous = str(found)
            seals.append(previous)
        if head is not None and head.count > len(rows):
            raise self._refused(f"ends at {where[-1]}, but the harness wrote {head.count} "
                                "records: the last ones were deleted")
        if head is not None and head.count and seals[head.count - 1] != head.seal:
            raise self._refused(f"{where[head.count - 1]} is not the record the harness "
                                "wrote there")
        return key, previous

    def _refused(self, what: str) -> LedgerError:
        return LedgerError(
            f"{self.jsonl}: {what}. Nothing was adopted: the harness does not start on a "
            f"ledger it cannot verify. Next: `autoresearch rebuild --tag {self.dir.name}` moves "
            "it aside (nothing is deleted) and rebuilds the records from the commits the "
            "harness made.", f"{self.jsonl}: {what}")

    def load(self) -> list[Experiment]:
        """`read`, then bring the tsv view (and the head) in step: for the harness itself."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.read()
        self._write_head()  # catches up after a kill between a line and its head
        self._sync_tsv()
        self.jsonl.touch()
        self._stamp = self._stat()
        return list(self.experiments)

    def _write_head(self) -> None:
        if self.key_path is not None and self.experiments:
            seal.write_head(seal.head_path(self.key_path), len(self.experiments), self._seal)

    def _sync_tsv(self) -> None:
        text = self.header + "".join(_tsv_line(e) for e in self.experiments)
        if not self.tsv.exists() or self.tsv.read_text(encoding="utf-8") != text:
            tmp = self.tsv.with_suffix(".tsv.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.tsv)

    def _line(self, experiment: Experiment, previous: str) -> tuple[bytes, str]:
        """The jsonl line for `experiment`, sealed on `previous` when there is a key."""
        record = seal.normalized(experiment.to_json())  # as the verifier will read it back
        mark = ""
        if self._key is not None:
            mark = seal.sign(self._key, previous, record)
            record["seal"] = mark
        return (json.dumps(record, sort_keys=True) + "\n").encode(), mark

    def append(self, experiment: Experiment) -> None:
        """Durably record one experiment: the jsonl first (fsync), then the tsv view."""
        if experiment.status not in STATUSES:  # a bug, not an outcome: fail loudly
            raise ValueError(f"unknown ledger status {experiment.status!r}")
        if self.key_path is not None and self._key is None:
            self._key = seal.make_key(self.key_path)  # the tag's first record
        line, mark = self._line(experiment, self._seal)
        with open(self.jsonl, "ab") as fh:
            if fh.tell() != self._valid_bytes:
                fh.truncate(self._valid_bytes)  # drop a torn tail before writing after it
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._valid_bytes += len(line)
        self._seal, self._tail = mark, line
        self.experiments.append(experiment)
        self._write_head()
        with open(self.tsv, "a", encoding="utf-8") as fh:
            fh.write(_tsv_line(experiment))
        self._stamp = self._stat()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, (self.jsonl, self.tsv)))

    def _tail_intact(self) -> bool:
        if not self._tail:
            return True
        with open(self.jsonl, "rb") as fh:
            fh.seek(self._valid_bytes - len(self._tail))
            return fh.read(len(self._tail)) == self._tail

    def intact(self) -> bool:
        """True if nothing but this ledger wrote its files since; otherwise rewrite them from
        the records held here (an experiment may not edit its own history) and say so.

        Two stats and one read of the last line, whose seal must be the one written: it
        stays as cheap at row 10,000 as at row 10. `load` verifies the whole chain.
        """
        try:
            if self._stat() == self._stamp and self._tail_intact():
                return True
        except OSError:
            pass
        self._rewrite()
        return False

    def write_all(self, experiments: list[Experiment]) -> None:
        """Replace every record with `experiments`, sealed afresh, in one write (`rebuild`)."""
        bad = [e.status for e in experiments if e.status not in STATUSES]
        if bad:
            raise ValueError(f"unknown ledger status {bad[0]!r}")
        if self.key_path is not None and self._key is None:
            self._key = seal.make_key(self.key_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.experiments = list(experiments)
        self._rewrite()

    def _rewrite(self) -> None:
        """Both files from the records held here: the jsonl (chained anew), head and tsv."""
        lines, previous = [], ""
        for e in self.experiments:
            line, previous = self._line(e, previous)
            lines.append(line)
        text = b"".join(lines)
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.jsonl)
        self._valid_bytes, self._seal = len(text), previous
        self._tail = lines[-1] if lines else b""
        self._write_head()
        self.tsv.unlink(missing_ok=True)
        self._sync_tsv()
        self._stamp = self._stat()

    def next_id(self) -> int:
        # Rows are in decision order: with parallel workers the last row's id is not the
        # largest, and an id handed out twice would mix two experiments' logs and files.
        return max(e.id for e in self.experiments) + 1 if self.experiments else 0

    def kept(self) -> list[Experiment]:
        return [e for e in self.experiments if e.status == "keep"]

    def by_id(self, exp_id: int) -> Experiment | None:
        for e in reversed(self.experiments):
            if e.id == exp_id:
                return e
        return None
