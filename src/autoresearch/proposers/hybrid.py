"""`hybrid`: an LLM that sees the sweep's Optuna study and may take its suggestion.

Per experiment the sweep (`SweepProposer`, configured by ``[proposer.sweep]``)
asks its study for the next point, without writing it. The LLM proposer
(`LLMProposer`, configured like ``--proposer llm``) then gets its usual prompt
plus a section on the study: the best points so far, this experiment's trust
region around the incumbent, what was tried, and the suggested change. The
model either answers ``Accept: optimizer``, and the suggestion is applied and
told back to the study like a plain sweep experiment, or proposes any code
change in the usual format. A model's change that only sets tuned constants is
told to the study too, so Optuna learns from the model's guesses; any other
code change leaves the study alone (the dropped suggestion is told as failed).

This is composition, not a fork: the LLM's prompt, retries, edit parsing,
costs and HTTP client are `llm.py`'s and `clients.py`'s own. Two seams are used:
the user template (the study section is appended to it each experiment) and the
chat client, subclassed so an acceptance is turned into the suggestion's
whole-file edit before `LLMProposer` parses it, so scope checks and cost
accounting stay on the one path.

Its value over ``sweep`` or ``llm`` alone has not been measured with a real
model yet; the tests drive it with a scripted server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from optuna.distributions import BaseDistribution

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import Context, Proposal, Proposer
from autoresearch.proposers.clients import ChatClient, Message, Reply
from autoresearch.proposers.llm import OPTIONS as LLM_OPTIONS
from autoresearch.proposers.llm import LLMProposer, make_llm
from autoresearch.proposers.options import check_known, get_num
from autoresearch.proposers.render import fence
from autoresearch.proposers.sweep import MEASURED, Suggestion, SweepProposer
from autoresearch.proposers.sweep_space import (
    bounds_text,
    contains,
    dist_to_json,
    find_constants,
    format_value,
    rewrite,
    widened,
)
from autoresearch.task import TaskSpec

OPTIONS = ("tried",)  # the hybrid's own keys; the rest are the llm proposer's
ACCEPT = re.compile(r"^\s*accept\s*:\s*optimizer\b", re.IGNORECASE | re.MULTILINE)
SEARCH = re.compile(r"^<{5,9} SEARCH", re.MULTILINE)


@dataclass
class AcceptingClient(ChatClient):
    """A `ChatClient` whose replies pass through ``on_reply`` (which may swap the text)."""

    on_reply: Callable[[str], str | None] | None = None

    @classmethod
    def wrapping(cls, client: ChatClient) -> AcceptingClient:
        return cls(**{f.name: getattr(client, f.name) for f in dataclasses.fields(client)
                      if f.init})

    def complete(self, system: str, messages: Sequence[Message], *,
                 max_tokens: int | None = None) -> Reply:
        reply = super().complete(system, messages, max_tokens=max_tokens)
        text = self.on_reply(reply.text) if self.on_reply else None
        return reply if text is None else dataclasses.replace(reply, text=text)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{n}={format_value(v)}" for n, v in params.items())


class HybridProposer(Proposer):
    name = "hybrid"

    def __init__(self, llm: LLMProposer, sweep: SweepProposer, *, tried: int = 20):
        self.llm, self.sweep, self.tried = llm, sweep, tried
        # Rows of both kinds feed the study, so switching `sweep` -> `hybrid` keeps what it knows.
        self.sweep.owners = {self.name, SweepProposer.name}
        self.client = AcceptingClient.wrapping(llm.client)
        llm.client = self.client
        self.user_template = llm.templates["user.txt"].template
        self._points: dict[int, tuple[dict[str, Any], dict[str, BaseDistribution]]] = {}

    def setup(self, history: Sequence[Experiment]) -> None:
        self.llm.setup(history)
        self.sweep.setup(history)

    def close(self) -> None:
        self.llm.close()

    # -- what the model sees ---------------------------------------------------------------

    def study_text(self, context: Context, suggestion: Suggestion | None) -> str:
        sweep, metric = self.sweep, context.metric
        constants = find_constants((context.workdir / sweep.file).read_text(encoding="utf-8"))
        lines = [f"## The optimizer's view\n\nAn Optuna study ({sweep.opts.sampler}) tunes the "
                 f"module-level constants of {sweep.file}."]
        if sweep.opts.sampler == "tpe" and sweep.opts.travel:
            lines.append(f"Its trust region for this experiment is centred on the incumbent; it "
                         f"grows after a keep and shrinks after {sweep.opts.patience} misses in a "
                         f"row (scale now {sweep.scale:g}):")
        else:
            lines.append("Its search space:")
        for n, d in sweep.regions(constants).items():
            now = f" (incumbent {format_value(constants[n].value)})" if n in constants else ""
            lines.append(f"- {n}: {bounds_text(d)}{now}")
        rows = [e for e in context.history if e.proposal.get("params")
                and e.proposer in sweep.owners]
        measured = [e for e in rows if e.metric is not None and e.status in MEASURED]
        better = "lower" if metric.direction == "minimize" else "higher"
        best = sorted(measured, key=lambda e: e.metric or 0.0,
                      reverse=metric.direction != "minimize")[:3]
        lines.append(f"\nBest points so far ({metric.name}, {better} is better):")
        lines += [f"- #{e.id} {e.metric:.6g}: {_params_text(e.proposal['params'])}"
                  for e in best] or ["- (none yet)"]
        shown = rows[-self.tried:] if self.tried else []
        lines.append(f"\nTried so far ({len(rows)} points, the last {len(shown)} shown):")
        lines += [f"- #{e.id} {e.status} "
                  f"{'-' if e.metric is None else format(e.metric, '.6g')}: "
                  f"{_params_text(e.proposal['params'])}" for e in shown] or ["- (nothing yet)"]
        if suggestion is None:
            lines.append("\nThe optimizer has no new suggestion this time: propose a code change.")
        else:
            lines.append(f"\nThe optimizer suggests for this experiment: "
                         f"{', '.join(suggestion.changes)}.\n\nTo accept it, answer with the "
                         "single line\n\nAccept: optimizer\n\nOtherwise propose a change in the "
                         "usual format (changing constants yourself is fine too).")
        return "\n".join(lines)

    def _accepted_answer(self, suggestion: Suggestion) -> str:
        return (f"Description: optimizer (accepted by the model): "
                f"{', '.join(suggestion.changes)}\n\n{self.sweep.file}\n"
                f"{fence(suggestion.source, 'python')}\n")

    # -- propose / observe -----------------------------------------------------------------

    def propose(self, context: Context) -> Proposal:
        path = Path(context.workdir) / self.sweep.file
        before = path.read_text(encoding="utf-8")
        suggestion = self.sweep.suggest(context)
        study = self.study_text(context, suggestion)
        # `$` in the study text must reach the model literally, not as a template variable.
        self.llm.templates["user.txt"] = Template(
            self.user_template.rstrip("\n") + "\n\n" + study.replace("$", "$$") + "\n")
        accepted: list[bool] = []

        def on_reply(text: str) -> str | None:
            if suggestion is None or not ACCEPT.search(text) or SEARCH.search(text):
                return None
            accepted.append(True)
            return self._accepted_answer(suggestion)

        self.client.on_reply = on_reply
        try:
            proposal = self.llm.propose(context)
        finally:
            self.client.on_reply = None
        after = path.read_text(encoding="utf-8")
        if suggestion is not None:
            if proposal.error is None and accepted and after == suggestion.source:
                self.sweep.adopt(context.experiment_id, suggestion)
                return dataclasses.replace(proposal, meta={
                    **proposal.meta, **suggestion.meta(self.sweep.opts.sampler),
                    "accepted": True})
            self.sweep.drop(suggestion)
        if proposal.error is None:
            point = self._constant_point(context, before, after)
            if point is not None:
                self._points[context.experiment_id] = point
                params, dists = point
                return dataclasses.replace(proposal, meta={
                    **proposal.meta, "params": params, "sampler": self.sweep.opts.sampler,
                    "region": {n: b for n, d in dists.items()
                               if (b := dist_to_json(d)) is not None}})
        return proposal

    def _constant_point(self, context: Context, before: str, after: str
                        ) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
        """The model's edit as a point for the study, when it only set tuned constants."""
        if after == before or self.sweep.opts.sampler == "cmaes":
            return None  # CMA-ES takes whole generations of its own asks, not stray points
        others = [p for p in context.files if p != self.sweep.file
                  and (context.workdir / p).is_file()
                  and (context.workdir / p).read_text(encoding="utf-8") != context.files[p]]
        if others:
            return None
        try:
            old, new = find_constants(before), find_constants(after)
        except SyntaxError:
            return None
        params = {n: new[n].value for n in self.sweep.caps
                  if n in old and n in new and new[n].value != old[n].value}
        rebuilt = before
        for n, v in params.items():
            rebuilt = rewrite(rebuilt, find_constants(rebuilt)[n], v)
        if not params or rebuilt != after:
            return None
        regions = self.sweep.regions(old)
        dists = {}
        for n, v in params.items():
            d = widened(regions[n], v)
            if not contains(d, v):
                d = self.sweep.caps[n]
            if not contains(d, v):
                return None  # outside the caps: not a point of this study
            dists[n] = d
        return params, dists

    def observe(self, experiment: Experiment) -> None:
        self.llm.observe(experiment)
        point = self._points.pop(experiment.id, None)
        if point is not None:
            self.sweep.note_outcome(experiment.status)
            self.sweep.tell_point(*point, experiment)
        else:
            self.sweep.observe(experiment)


@register("hybrid")
def make_hybrid(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> HybridProposer:
    """``--proposer hybrid`` (``hybrid:anthropic`` names the provider, as for ``llm``)."""
    check_known("hybrid", options, (*LLM_OPTIONS, *OPTIONS))
    tried = int(get_num(options, "tried", 20, integer=True, low=0) or 0)
    llm = make_llm(arg, task, {k: v for k, v in options.items() if k not in OPTIONS})
    assert isinstance(llm, LLMProposer)
    table = task.proposer.get("sweep")
    sweep = SweepProposer(task, dict(table) if isinstance(table, dict) else {})
    return HybridProposer(llm, sweep, tried=tried)
