"""How busy each worker was: data from the ledger, and a timeline renderer.

Every row's ``evidence["jobs"]`` lists the jobs that ran for it as
``[kind, worker, started, finished]`` (wall-clock seconds); a candidate's
``proposal["seconds"]`` is how long its proposer thought, ending when it was
admitted. From these: each worker's busy fraction of the wall time, the
proposer's, and experiments per hour. `plot_timeline` draws one lane per worker
plus the proposer's, run time and proposer time in different colours.

Rows written before parallel workers (no ``jobs``) count with their
``run_seconds`` ending at ``finished``, on worker ``w0``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment

COLOURS = {"measure": "#4C72B0", "checks": "#DD8452", "holdout": "#55A868",
           "propose": "#8172B3"}


@dataclass(frozen=True)
class Span:
    lane: str  # "w0", "w1", ... or "proposer"
    kind: str  # "measure" | "checks" | "holdout" | "propose"
    start: float
    end: float
    exp_id: int


@dataclass(frozen=True)
class Occupancy:
    spans: tuple[Span, ...]
    start: float
    end: float
    busy: dict[str, float] = field(default_factory=dict)  # lane -> busy fraction of the wall
    per_hour: float = 0.0  # experiments (baseline and re-measures excluded) per hour

    @property
    def lanes(self) -> list[str]:
        workers = sorted({s.lane for s in self.spans if s.lane != "proposer"},
                         key=lambda w: (len(w), w))
        return workers + (["proposer"] if any(s.lane == "proposer" for s in self.spans) else [])


def spans(rows: Sequence[Experiment]) -> list[Span]:
    out: list[Span] = []
    for e in rows:
        jobs = e.evidence.get("jobs") or []
        for kind, worker, start, end in jobs:
            out.append(Span(worker or "w0", kind, float(start), float(end), e.id))
        if not jobs and e.run_seconds and e.finished:
            out.append(Span(e.worker or "w0", "measure", e.finished - e.run_seconds,
                            e.finished, e.id))
        thought = float(e.proposal.get("seconds") or 0.0)
        if thought > 0 and e.started:
            out.append(Span("proposer", "propose", e.started, e.started + thought, e.id))
    return out


def occupancy(rows: Sequence[Experiment]) -> Occupancy | None:
    """Busy fractions over the span from the first job or proposal to the last; None when
    nothing ran yet."""
    found = spans(rows)
    if not found:
        return None
    start = min(s.start for s in found)
    end = max(s.end for s in found)
    wall = max(end - start, 1e-9)
    busy: dict[str, float] = {}
    for lane in {s.lane for s in found}:
        busy[lane] = _union(sorted((s.start, s.end) for s in found if s.lane == lane)) / wall
    done = sum(e.proposer not in ("baseline", "harness") for e in rows)
    return Occupancy(tuple(found), start, end, busy, 3600.0 * done / wall)


def _union(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in intervals:
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def in_flight(state: Path) -> list[dict[str, object]]:
    """The experiments a running harness has in flight (its `inflight/*.json` files)."""
    out = []
    for path in sorted((state / "inflight").glob("*.json")):
        try:
            out.append(json.loads(path.read_text() or "{}"))
        except (OSError, ValueError):
            continue
    return out


def plot_timeline(occ: Occupancy, out: Path, title: str) -> Path:
    """One lane per worker (and the proposer), each job a bar coloured by its kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = occ.lanes
    unit, name = (60.0, "minutes") if occ.end - occ.start > 120 else (1.0, "seconds")
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.5 * len(lanes)))
    for i, lane in enumerate(lanes):
        for kind in COLOURS:
            bars = [((s.start - occ.start) / unit, (s.end - s.start) / unit)
                    for s in occ.spans if s.lane == lane and s.kind == kind]
            if bars:
                ax.broken_barh(bars, (i - 0.4, 0.8), facecolors=COLOURS[kind])
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"{lane} ({100 * occ.busy.get(lane, 0):.0f}%)" for lane in lanes])
    ax.invert_yaxis()
    ax.set_xlabel(f"{name} since the first job")
    ax.set_title(f"{title}: {occ.per_hour:.1f} experiments/hour")
    kinds = sorted({s.kind for s in occ.spans})
    ax.legend(handles=[Patch(color=COLOURS[k], label=k) for k in kinds], loc="upper right",
              fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def live_summary(rows: Sequence[Experiment], state: Path) -> dict[str, Any]:
    """Workers' occupancy and current experiments, the backlog and the rate: what `status`
    prints and `status --json` returns as ``workers``. ``live.json`` is written by a running
    harness (`loop.Loop`); a stopped one leaves it stale, so it counts only with a lock."""
    occ = occupancy(rows)
    running = in_flight(state)
    try:
        live = json.loads((state / "live.json").read_text())
    except (OSError, ValueError):
        live = {}
    slots = live.get("slots", {}) if running else {}
    lanes = sorted({*(occ.busy if occ else {}), *slots} - {"proposer"}, key=lambda w: (len(w), w))
    return {
        "experiments_per_hour": round(occ.per_hour, 2) if occ else 0.0,
        "backlog": live.get("backlog", 0) if running else 0,
        "proposer_busy": round(occ.busy.get("proposer", 0.0), 3) if occ else 0.0,
        "workers": [{"worker": w, "busy": round(occ.busy.get(w, 0.0), 3) if occ else 0.0,
                     "running": slots.get(w)} for w in lanes],
        "in_flight": [{"id": r.get("id"), "description": r.get("description", "")}
                      for r in running],
    }


def render_live(summary: dict[str, Any]) -> str:
    """One line per worker for the terminal, after the status table."""
    lines = []
    for w in summary["workers"]:
        now = f"running experiment {w['running']}" if w["running"] is not None else "idle"
        lines.append(f"  {w['worker']}: {100 * w['busy']:.0f}% busy, {now}")
    head = (f"workers: {summary['experiments_per_hour']} experiments/hour, backlog "
            f"{summary['backlog']} proposal(s) ready, proposer busy "
            f"{100 * summary['proposer_busy']:.0f}%")
    return "\n".join([head, *lines])
