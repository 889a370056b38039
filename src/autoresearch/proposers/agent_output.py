"""Read what an agent CLI reported: its final message, its cost, and how it failed.

Each CLI reports differently. Claude Code's ``--output-format json`` prints one
result object (``subtype`` success / error_max_turns / error_during_execution,
``is_error``, ``total_cost_usd`` in every subtype, ``result`` only on success).
Codex exits non-zero when its model calls fail. Aider exits 0 even when every
model call failed (a bad key, no network); it only says so in its output, as
litellm exception names and its own hints. So failures are also read from the
text, and an auth or quota failure, which no retry can fix, stops the run with
the variable to set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# The key each preset reads; a custom command's needs are its own.
KEY_HINTS = {
    "claude": "ANTHROPIC_API_KEY (or log in with `claude` and add ~/.claude to "
              "sandbox_expose)",
    "codex": "OPENAI_API_KEY (or CODEX_API_KEY)",
    "aider": "the key for aider's model (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...; see "
             "`aider --help` --api-key)",
    "command": "the API key your command needs",
}
_AUTH = re.compile(
    r"AuthenticationError|not able to authenticate you|invalid[ _-]?(x-)?api[ _-]?key|"
    r"incorrect api key|please run /login|not logged in|401 unauthorized|"
    r"missing (environment variable|api key)[^\n]*api_key|"
    r"(OPENAI|ANTHROPIC|CODEX)_API_KEY[^\n]*(not set|missing)", re.IGNORECASE)
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|credit balance is too low|"
                    r"insufficient credits|billing_hard_limit", re.IGNORECASE)
# Aider (through litellm) prints the exception class name of each failed model call.
_AIDER_CALL_FAILED = re.compile(
    r"litellm\.(\w+Error|Timeout)[^\n]*|The API provider's servers are down[^\n]*|"
    r"The API provider (has rate limited you|timed out)[^\n]*", re.IGNORECASE)


@dataclass(frozen=True)
class AgentReport:
    description: str
    cost_usd: float = 0.0
    tokens: int = 0
    error: str | None = None  # what the agent itself reported as failure
    cost_reported: bool = False  # the agent printed a cost (Claude Code's JSON)


def fatal_reason(label: str, output: str) -> str | None:
    """A sentence for ProposerError when the output shows an auth or quota failure."""
    quota = _QUOTA.search(output)
    if quota:
        return (f"agent {label}: its account is out of quota or credit ({quota.group(0)!r} in "
                f"its output). Add credit, or set {KEY_HINTS.get(label, KEY_HINTS['command'])} "
                "to the key of an account that has some.")
    auth = _AUTH.search(output)
    if auth:
        return (f"agent {label}: its model calls were refused as unauthenticated "
                f"({auth.group(0)!r} in its output). Set {KEY_HINTS.get(label, '')}"
                .rstrip() + ".")
    return None


def aider_call_failure(output: str) -> str | None:
    """Aider exits 0 when its model calls failed; its output names the failure."""
    found = _AIDER_CALL_FAILED.search(output)
    return f"aider's model calls failed: {found.group(0).strip()[:300]}" if found else None


def claude_result(stdout: str) -> dict | None:
    """The result object of ``claude -p --output-format json`` (the last JSON line that is
    a ``{"type": "result"}`` object, or the whole output when it is one object)."""
    stripped = stdout.strip()
    candidates = [stripped] + [line for line in reversed(stripped.splitlines())
                               if line.startswith("{")]
    for text in candidates:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and (data.get("type") == "result" or "result" in data
                                       or "total_cost_usd" in data):
            return data
    return None


_DESCRIPTION = re.compile(r"^[\s#*_>-]*description[\s*_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)


def describe(text: str) -> str:
    """The last ``Description:`` line, else the last non-empty paragraph."""
    for line in reversed(text.splitlines()):
        m = _DESCRIPTION.match(line)
        if m and m.group(1).strip():
            return " ".join(m.group(1).split())[:500]
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return " ".join(paragraphs[-1].split())[:500] if paragraphs else ""


def read_report(stdout: str) -> AgentReport:
    data = claude_result(stdout)
    if data is None:
        return AgentReport(describe(stdout))
    text = str(data.get("result") or "")
    cost = data.get("total_cost_usd", data.get("cost_usd"))
    raw_usage = data.get("usage")
    usage: dict = raw_usage if isinstance(raw_usage, dict) else {}
    tokens = sum(int(usage.get(k) or 0) for k in (
        "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
        "output_tokens"))
    subtype = str(data.get("subtype") or "")
    error: str | None = None
    if data.get("is_error") or (subtype and subtype != "success"):
        detail = " ".join(str(e) for e in data.get("errors") or [] if e) if isinstance(
            data.get("errors"), list) else ""
        error = (text or detail or f"claude stopped with {subtype or 'an error'}")
        if subtype and subtype != "success" and subtype not in error:
            error = f"{subtype}: {error}"
    return AgentReport(describe(text), float(cost or 0.0), tokens, error,
                       cost_reported=isinstance(cost, int | float))
