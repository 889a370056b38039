"""The ``agent`` proposer: a coding-agent CLI edits the worktree, non-interactively.

The agent gets the prompt in a file (and on stdin), runs with the experiment
worktree as its cwd, and must only edit. Everything else stays with the harness:
after the agent exits it diffs the worktree, enforces scope (an edit outside the
mutable surface makes the proposal ``invalid``), runs the experiment and
decides. The agent's final message becomes the description.

The agent runs in its own session (``start_new_session``) so that at its
deadline, on Ctrl-C, or when it exits leaving helpers behind, the whole process
group is ended by ``runner.run_command``: SIGTERM, a grace period, then SIGKILL.

The prompt file lives in a scratch folder outside the worktree, so writing it is
never a scope violation.

Options: ``agent`` (claude|codex|aider) or ``command`` (a template, see
``PLACEHOLDERS``), ``model``, ``timeout`` (seconds, 900), ``prompt_dir``,
``history``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.base import (
    Context,
    Proposal,
    Proposer,
    ProposerError,
    run_in_sandbox,
)
from autoresearch.proposers.options import check_known, get_num, get_str
from autoresearch.proposers.render import check_prompt_dir, load_template, variables
from autoresearch.task import ConfigError, TaskSpec

OPTIONS = ("agent", "command", "model", "timeout", "prompt_dir", "history")

# Every preset also gets the prompt on stdin. {model_args} becomes `--model M` or nothing.
PRESETS: dict[str, str] = {
    # -p: print mode, no TUI. acceptEdits lets it edit files without asking; shell commands
    # stay unapproved (so it cannot run the experiment). JSON output carries the cost.
    "claude": "claude -p --permission-mode acceptEdits --output-format json {model_args}",
    # exec: non-interactive; workspace-write lets it edit the cwd; `-` reads the prompt
    # from stdin (a long prompt as an argument can hit the argv size limit).
    "codex": "codex exec --sandbox workspace-write --skip-git-repo-check {model_args} -",
    # --no-git: the harness owns git (no auto-commits, no .gitignore edits). History files go
    # to the scratch folder and the repo map is off, so nothing lands in the worktree.
    "aider": ("aider --message-file {prompt_file} --yes-always --no-git --no-pretty "
              "--no-check-update --map-tokens 0 --chat-history-file {scratch}/aider.chat.md "
              "--input-history-file {scratch}/aider.input.history {model_args} {files}"),
}
INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "aider": "python -m pip install aider-install && aider-install",
}
PLACEHOLDERS = ("{prompt_file}", "{workdir}", "{files}", "{model}", "{model_args}", "{scratch}")
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
_DESCRIPTION = re.compile(r"^[\s#*_>-]*description[\s*_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)


class AgentProposer(Proposer):
    name = "agent"

    def __init__(self, label: str, command: Sequence[str], root: Path, *,
                 timeout: float = 900.0, model: str | None = None,
                 prompt_dir: Path | None = None, history: int = 30,
                 kill_grace: float = KILL_GRACE):
        self.label = label  # "claude", "codex", "aider" or "command"
        self.command = list(command)
        self.root = root
        self.timeout = timeout
        self.model = model
        self.history = history
        self.kill_grace = kill_grace
        self.template = load_template("agent.txt", prompt_dir)
        self.scratch: Path | None = None

    def setup(self, history: Sequence[Experiment]) -> None:
        exe = self.command[0]
        if "/" in exe:
            path = Path(exe).expanduser()
            path = path if path.is_absolute() else self.root / path
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ProposerError(f"agent: {path} is not an executable file "
                                    "(check [proposer] command, and chmod +x).")
            found = str(path.resolve())
        else:
            which = shutil.which(exe)
            if which is None:
                hint = INSTALL_HINTS.get(self.label)
                raise ProposerError(
                    f"agent: `{exe}` is not on PATH. "
                    + (f"Install it ({hint}) or " if hint else "Install it or ")
                    + "set [proposer] command to the agent's full command line.")
            found = which
        self.command[0] = found
        self.scratch = Path(tempfile.mkdtemp(prefix="autoresearch-agent-"))

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def argv(self, context: Context, prompt_file: Path) -> list[str]:
        assert self.scratch is not None
        simple = {"{prompt_file}": str(prompt_file), "{workdir}": str(context.workdir),
                  "{model}": self.model or "", "{scratch}": str(self.scratch)}
        out: list[str] = []
        for token in self.command:
            # Whole-token placeholders may expand to several arguments or to none.
            if token == "{files}":
                out.extend(context.files)
            elif token == "{model_args}":
                out.extend(["--model", self.model] if self.model else [])
            else:
                for key, value in simple.items():
                    token = token.replace(key, value)
                out.append(token)
        return out

    def propose(self, context: Context) -> Proposal:
        if self.scratch is None:
            self.setup(context.history)
        assert self.scratch is not None
        prompt = self.template.safe_substitute(variables(context, self.history))
        prompt_file = self.scratch / f"prompt-{context.experiment_id}.md"
        prompt_file.write_text(prompt, encoding="utf-8")
        out_file = self.scratch / f"stdout-{context.experiment_id}.txt"
        argv = self.argv(context, prompt_file)
        env = {**os.environ, "AUTORESEARCH_PROMPT_FILE": str(prompt_file),
               "AUTORESEARCH_EXPERIMENT": str(context.experiment_id)}
        try:
            res = run_in_sandbox(context, argv, out_file, self.timeout, env,
                                 writable=[self.scratch], readonly=[Path(argv[0]).resolve()],
                                 stdin=prompt_file, grace=self.kill_grace)
        except OSError as exc:
            raise ProposerError(f"agent: cannot start {argv[0]}: {exc}") from exc
        code, timed_out, seconds = res.exit_code, res.timed_out, round(res.seconds, 3)
        err_file = out_file.with_suffix(".err")
        stdout = _tail(out_file, 256_000)
        stderr = _tail(err_file, 4_000)
        meta: dict[str, Any] = {"agent": self.label, "exit_code": code, "seconds": seconds}
        description, cost, tokens, agent_error = final_message(stdout)
        description = description or f"{self.label} agent edit (no final message)"
        if timed_out:
            meta["log_tail"] = (stderr or stdout)[-1000:]
            return Proposal(description, error=f"agent timed out after {self.timeout:g}s; its "
                            "process group was killed", cost_usd=cost, tokens=tokens, meta=meta)
        if code != 0 or agent_error:
            detail = (agent_error or stderr or stdout).strip()[-500:]
            meta["log_tail"] = (stderr or stdout)[-1000:]
            return Proposal(description, error=f"agent exited with code {code}: {detail}",
                            cost_usd=cost, tokens=tokens, meta=meta)
        return Proposal(description, cost_usd=cost, tokens=tokens, meta=meta)


def _tail(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - limit))
        return fh.read().decode("utf-8", errors="replace")


def final_message(stdout: str) -> tuple[str, float, int, str | None]:
    """(description, cost_usd, tokens, agent-reported error) from the agent's stdout.

    Claude's ``--output-format json`` result object is read for its text, cost and usage;
    otherwise the last ``Description:`` line wins, else the last non-empty paragraph.
    """
    text, cost, tokens, error = stdout, 0.0, 0, None
    stripped = stdout.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and "result" in data:
            text = str(data.get("result") or "")
            cost = float(data.get("total_cost_usd") or data.get("cost_usd") or 0.0)
            usage = data.get("usage") or {}
            tokens = sum(int(usage.get(k) or 0) for k in ("input_tokens", "output_tokens"))
            if data.get("is_error"):
                error = text or str(data.get("subtype") or "agent reported an error")
    lines = text.splitlines()
    for line in reversed(lines):
        m = _DESCRIPTION.match(line)
        if m and m.group(1).strip():
            return " ".join(m.group(1).split())[:500], cost, tokens, error
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    last = " ".join(paragraphs[-1].split())[:500] if paragraphs else ""
    return last, cost, tokens, error


@register("agent")
def make_agent(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> AgentProposer:
    """``--proposer agent --agent claude``, ``agent:codex``, or ``[proposer] command``."""
    check_known("agent", options, OPTIONS)
    agent = get_str(options, "agent", arg, choices=tuple(PRESETS))
    command = options.get("command")
    if agent and command:
        raise ConfigError("proposer.command: both `agent` and `command` are set; keep one "
                          "(a preset name, or your own command line).")
    if agent:
        argv = shlex.split(PRESETS[agent])
        label = agent
    elif command:
        if isinstance(command, str):
            argv = shlex.split(command)
        elif isinstance(command, list) and all(isinstance(c, str) for c in command):
            argv = list(command)
        else:
            raise ConfigError(f"proposer.command: expected a string or a list of strings, "
                              f"got {command!r}")
        if not argv:
            raise ConfigError("proposer.command: is empty.")
        label = "command"
    else:
        raise ConfigError('proposer.agent: required for the agent proposer: agent = "claude", '
                          '"codex" or "aider" (or --agent), or command = "my-agent '
                          '{prompt_file}".')
    try:
        prompt_dir = check_prompt_dir(get_str(options, "prompt_dir"), task.root)
    except ProposerError as exc:
        raise ConfigError(str(exc)) from exc
    return AgentProposer(
        label, argv, task.root,
        timeout=float(get_num(options, "timeout", 900.0, low=0, low_open=True) or 900.0),
        model=get_str(options, "model"),
        prompt_dir=prompt_dir,
        history=int(get_num(options, "history", 30, integer=True, low=0) or 0),
    )
