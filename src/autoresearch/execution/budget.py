"""The time budget, kept by the harness: it, not the run, says when time is up.

A run opts in by printing the line ``AUTORESEARCH started`` right after its first training
step (a ``METRIC ... progress=...`` line counts too). The harness reads the run's log while
it runs and starts the budget clock when that line appears; `budget` seconds later it
creates the file named by ``$AUTORESEARCH_STOP_FILE``, and the run must have exited
`grace` seconds after that. A run still going then is killed and `invalid` (over budget).

Start-up therefore does not count, however slow the machine is while the run imports and
loads: an honest run under load stays valid and just trains fewer steps. What the harness
cannot see is whether a run trains before it announces its first step, so the clock starts
at the latest `startup_limit` seconds after launch (the baseline's start-up plus as much
again, at least 10% of the budget); a slower honest start-up only costs training time.

A clock fake (a run whose own clock runs slow) gains nothing while the run honours the stop;
one that also ignores it is caught once it trains past `grace`, i.e. for a fake factor above
``1 + grace / budget`` (`smallest_caught_fake`). A run that in addition announces its first
step as late as possible gains at most ``startup_limit - baseline start-up`` more.

Why a file and no signal: SIGUSR1 and friends kill a process that does not handle them,
which would crash every task written before this rule; a file is ignored by those. The
file lives in a directory the harness owns and the sandbox binds read-only, so a run can
neither create it early nor block its creation.

Tasks whose baseline printed no marker keep the older rule: the whole run may take the
budget plus an allowance derived from the baseline's start-up and teardown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

STOP_ENV = "AUTORESEARCH_STOP_FILE"
MARKER = "AUTORESEARCH started"
# A line starting with the marker, or a METRIC line that reports training progress (the
# GPT template's periodic `METRIC train_loss=... progress=...`): the first step is done.
_MARKER = re.compile(rb"^[ \t]*(?:AUTORESEARCH[ _]started\b|METRIC\b[^\n]*\bprogress[ \t]*=)",
                     re.MULTILINE | re.IGNORECASE)
_READ_LIMIT = 2**20  # bytes of new log read per poll: a chatty run cannot stall the harness
GRACE_FLOOR = 5.0  # seconds a run may take to exit after the stop, at least
GRACE_SHARE = 0.05  # ...and at least this share of the budget
TEARDOWN_FACTOR = 3.0  # ...and at least this many times the baseline's own exit time
STARTUP_SHARE = 0.10  # the clock waits for the first step: baseline start-up + max(it, this)


class Allowance(float):
    """Seconds a run may take past its budget (a float, as `Guards.allowance` always was),
    carrying the stop rule when the baseline announced its first step.

    With `startup_limit` set, the value is the grace after the harness's stop; without it
    (the older rule) it is the slack on the run's total wall time over the budget."""

    startup_limit: float | None

    def __new__(cls, seconds: float, startup_limit: float | None = None) -> Allowance:
        obj = super().__new__(cls, seconds)
        obj.startup_limit = startup_limit
        return obj

    @property
    def stops(self) -> bool:
        """True for the harness-kept clock; False for the older total-time rule."""
        return self.startup_limit is not None


def legacy_allowance(budget: float, overhead: float) -> Allowance:
    """The older rule, for tasks that print no marker: the baseline's start-up and teardown
    (`overhead`) 1.5 times over, plus 5% of the budget, at least 5 s."""
    return Allowance(max(GRACE_FLOOR, GRACE_SHARE * budget + 1.5 * overhead))


def stop_allowance(budget: float, startup: float, teardown: float) -> Allowance:
    """The stop rule from the baseline's harness-observed start-up and teardown."""
    grace = max(GRACE_FLOOR, GRACE_SHARE * budget, TEARDOWN_FACTOR * teardown)
    return Allowance(grace, startup + max(startup, STARTUP_SHARE * budget))


class BudgetClock:
    """Watches one run's log for its first step and sends the stop at the budget.

    `poll(elapsed)` is called by the process loop every few hundred milliseconds with the
    seconds since launch; it returns a reason to kill the run once the run overstays the
    stop (only when `rule.stops`). Timestamps are seconds since launch, as `elapsed`."""

    def __init__(self, log: Path, stop_file: Path, budget: float,
                 rule: float | None = None) -> None:
        self.log, self.stop_file, self.budget = log, stop_file, budget
        self.rule = rule if isinstance(rule, Allowance) and rule.stops else None
        self.marker: float | None = None  # when the first-step line was read
        self.started: float | None = None  # when the budget clock started
        self.stopped: float | None = None  # when the stop file was created
        self._offset = 0
        self._partial = b""

    def poll(self, elapsed: float) -> str | None:
        if self.marker is None and self._scan():
            self.marker = elapsed
            if self.started is None:
                self.started = elapsed
        limit = self.rule.startup_limit if self.rule is not None else None
        if self.started is None and limit is not None and elapsed >= limit:
            self.started = limit  # no first step yet: the clock starts anyway
        if self.started is not None and self.stopped is None and \
                elapsed >= self.started + self.budget:
            self._send_stop(elapsed)
        return self.overstayed(elapsed)

    def overstayed(self, seconds: float) -> str | None:
        """Why a run still running (or ending) at `seconds` broke the rule, or None."""
        if self.rule is None or self.stopped is None or seconds <= self.stopped + self.rule:
            return None
        assert self.started is not None
        how = (f"its first step at {self.started:.1f}s" if self.marker == self.started else
               f"{self.started:.1f}s, its start-up limit (no first step announced by then)")
        return (f"over budget: the run was still running {float(self.rule):.1f}s after the "
                f"harness's stop at {self.stopped:.1f}s (the {self.budget:g}s budget counted "
                f"from {how}); a run must exit within {float(self.rule):.1f}s of "
                f"${STOP_ENV} appearing")

    def notes(self, seconds: float) -> dict[str, Any]:
        """Harness-observed timings, for the ledger (the baseline's derive the next rule)."""
        out: dict[str, Any] = {}
        if self.marker is not None:
            out["startup_seconds"] = round(self.marker, 2)
        if self.stopped is not None:
            out["teardown_seconds"] = round(max(0.0, seconds - self.stopped), 2)
        return out

    def _send_stop(self, elapsed: float) -> None:
        self.stopped = elapsed
        try:  # a run that made this impossible only ignores the stop; the rule still holds
            self.stop_file.write_text(f"{elapsed:.2f}\n")
        except OSError:
            pass

    def _scan(self) -> bool:
        """True when new output holds the marker line (complete lines only)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read(_READ_LIMIT)
        except OSError:
            return False
        if not chunk:
            return False
        self._offset += len(chunk)
        text = self._partial + chunk
        cut = text.rfind(b"\n") + 1
        self._partial = text[cut:][-256:]
        return _MARKER.search(text[:cut]) is not None


def describe(budget: float, rule: float) -> str:
    """The start-up message for the rule in force (for the loop, after the baseline)."""
    if isinstance(rule, Allowance) and rule.stops:
        assert rule.startup_limit is not None
        return (f"budget: {budget:g}s from a run's first step (at the latest "
                f"{rule.startup_limit:.1f}s after launch), then ${STOP_ENV} is created and "
                f"the run must exit within {float(rule):.1f}s; a clock slowed by more than "
                f"{1 + float(rule) / budget:.2f}x that keeps training is caught")
    return (f"budget: a run may take {float(rule):.1f}s over its {budget:g}s budget in all, "
            f"so a clock slowed by more than {1 + float(rule) / budget:.2f}x is caught (the "
            "task announces no first step, so start-up counts)")
