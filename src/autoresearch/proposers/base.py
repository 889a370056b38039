"""The proposer extension point: whatever edits the mutable surface.

Call order, per `autoresearch run` (the proposer pool in `proposers.pool` owns it; it never
makes two calls at once, so a proposer need not be thread-safe):

1. ``setup(history)`` once, before the first experiment of this invocation.
   Validate external needs here (a missing binary, an unset API key) so a bad
   configuration fails at start, not at experiment 1. ``history`` is the ledger
   so far, which lets a proposer resume its own state (e.g. re-tell Optuna).
2. For each experiment after the baseline:
   ``propose(context)`` edits files under ``context.workdir`` and returns a
   ``Proposal``. The harness then diffs the worktree, enforces scope, runs the
   experiment and decides; the proposer never runs it or reads the score
   from its own output.
3. ``observe(experiment)`` with the ledger record of what happened (also for
   invalid, duplicate and crashed proposals), delivered before the next ``propose``.
   When proposals are made ahead (``ahead = True``, the default), a proposal can be
   made before the previous one's result is known.
4. ``close()`` once at the end, also after Ctrl-C (a cancelled ``propose`` may still
   be returning on the pool's thread: close must not wait for it).

Domain failures (a model that cannot produce an applicable edit) are returned
as ``Proposal(error=...)`` and become an `invalid` ledger row. Raise
``ProposerError`` only for misconfiguration or a fatal condition (401) that
should stop the run with a message.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.execution.phase import Phase, PhaseRunner
from autoresearch.execution.process import RunResult
from autoresearch.execution.sandbox import Access
from autoresearch.ledger import Experiment
from autoresearch.task import MetricSpec


class ProposerError(RuntimeError):
    """A proposer cannot work at all (misconfigured, unauthorized). Stops the run."""


@dataclass(frozen=True)
class Context:
    """Everything a proposer may know when it proposes experiment ``experiment_id``."""

    experiment_id: int
    workdir: Path  # a plain export of the incumbent (no .git); edit files here
    program: str  # text of program.md, the human's charter
    files: dict[str, str]  # editable path (relative) -> current content
    editable: tuple[str, ...]  # the editable globs
    metric: MetricSpec
    time_budget: float
    history: tuple[Experiment, ...]  # ledger records, oldest first
    last_failure: str | None = None  # log tail of the most recent crash/timeout
    feedback: str | None = None  # why the previous proposal was rejected (invalid, duplicate)
    # Harness-side only, never shown to a proposer's process: where to read git history
    # (kept diffs), and the sandboxed runner that proposer commands must go through.
    repo: Path | None = None
    phases: PhaseRunner | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "workdir": str(self.workdir),
            "program": self.program,
            "files": self.files,
            "editable": list(self.editable),
            "metric": {"name": self.metric.name, "direction": self.metric.direction},
            "time_budget": self.time_budget,
            "history": [e.to_json() for e in self.history],
            "last_failure": self.last_failure,
            "feedback": self.feedback,
        }


@dataclass(frozen=True)
class Proposal:
    """What a proposer did. The edit itself lives in the worktree, not here."""

    description: str
    error: str | None = None  # set when no valid edit could be produced -> `invalid`
    cost_usd: float = 0.0
    tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able extras, e.g. sweep params


class Proposer(ABC):
    """Base class; see the module docstring for the call order."""

    name: str = "proposer"
    # Worth proposing ahead while experiments run (an LLM or an agent thinks for a minute).
    # False for an instant proposer: a proposal made ahead only risks a stale incumbent.
    ahead: bool = True

    def setup(self, history: Sequence[Experiment]) -> None:  # noqa: B027 - optional hook
        """Validate and restore state. Raise ProposerError to refuse to start."""

    @abstractmethod
    def propose(self, context: Context) -> Proposal:
        """Edit files under ``context.workdir`` and describe the change."""

    def observe(self, experiment: Experiment) -> None:  # noqa: B027 - optional hook
        """Learn from the outcome of the last proposal."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, clients)."""

    def cost_unknown(self) -> str | None:
        """Why this proposer cannot report what it spends, or None when it can (or spends
        nothing). ``run --max-cost`` refuses to start on a reason unless the user accepts
        the risk. Override in a proposer that calls a paid service it cannot price."""
        return None


ACCEPT_UNPRICED_FLAG = "--accept-unknown-cost"


def check_cost_cap(proposer: Proposer, max_cost: float | None, accepted: bool) -> str | None:
    """Refuse a ``--max-cost`` that could never trigger: raise ProposerError when the
    proposer cannot report its spend, unless the user passed ``ACCEPT_UNPRICED_FLAG``
    (then the reason comes back, to be shown as a warning)."""
    if max_cost is None:
        return None
    reason = proposer.cost_unknown()
    if reason is None:
        return None
    if accepted:
        return f"--max-cost ${max_cost:g} cannot see this spend: {reason}"
    raise ProposerError(
        f"--max-cost ${max_cost:g} could never stop this run: {reason}, so its spend counts "
        f"as $0. Configure a price where that is possible, cap the run with "
        f"--max-experiments or --hours instead, or pass {ACCEPT_UNPRICED_FLAG} to run anyway.")


def safe_propose(proposer: Proposer, context: Context) -> Proposal:
    """``proposer.propose(context)``, with any surprise turned into a failed proposal.

    ``ProposerError`` (a fatal, explained condition) and ``KeyboardInterrupt`` still
    propagate; any other exception is a bug or an unforeseen answer, which should cost
    one experiment (an ``invalid`` row with the reason), not the night.
    """
    try:
        return proposer.propose(context)
    except ProposerError:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: no proposer surprise is a crash
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
        return Proposal(description=f"({proposer.name} proposer failed)",
                        error=f"the {proposer.name} proposer failed unexpectedly: "
                              f"{type(exc).__name__}: {exc}{at}",
                        meta={"exception": type(exc).__name__})


def run_in_sandbox(context: Context, command: str | Sequence[str], log: Path, timeout: float,
                   env: dict[str, str], *, writable: Sequence[Path] = (),
                   readonly: Sequence[Path] = (), stdin: Path | None = None,
                   grace: float = 5.0) -> RunResult:
    """Run a proposer's command in `context.workdir` through the harness's phase runner.

    The proposer phase keeps the network (LLM agents need their API) but sees only the
    export it edits, the system and the venv read-only, and what `writable`/`readonly`
    add (its scratch folder, its own executable). Stderr goes to `log` + `.err`.
    """
    phases = context.phases or PhaseRunner()
    access = Access(writable=tuple(writable), readonly=tuple(readonly), network=True)
    return phases.run(Phase("propose", command, context.workdir, log, timeout, env, access,
                            merge_stderr=False, stdin=stdin, grace=grace))
