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

import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoresearch.ledger import Experiment
from autoresearch.proposers import register
from autoresearch.proposers.agent_output import (
    AgentReport,
    aider_call_failure,
    fatal_reason,
    read_report,
)
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
# What each may run during a proposal is documented in docs/proposers.md ("What an agent
# may run"); the harness's sandbox bounds all of them.
PRESETS: dict[str, str] = {
    # -p: print mode, no TUI. acceptEdits lets it edit files without asking, but it may still
    # run some shell commands, so the shell and the web tools are denied outright: the harness
    # runs the experiment. JSON output carries the cost in every result subtype.
    "claude": ("claude -p --permission-mode acceptEdits --output-format json "
               "--disallowedTools Bash,WebFetch,WebSearch {model_args}"),
    # exec: non-interactive; workspace-write lets it edit the cwd, and by default also /tmp
    # and $TMPDIR, which the two -c overrides take away. `-` reads the prompt from stdin
    # (a long prompt as an argument can hit the argv size limit).
    "codex": ("codex exec --sandbox workspace-write --skip-git-repo-check "
              "-c sandbox_workspace_write.exclude_slash_tmp=true "
              "-c sandbox_workspace_write.exclude_tmpdir_env_var=true {model_args} -"),
    # --no-git: the harness owns git (no auto-commits, no .gitignore edits). History files go
    # to the scratch folder and the repo map is off, so nothing lands in the worktree. Only
    # the editable files are added to the chat. --yes-always also answers side prompts, so
    # those are switched off: URL scraping (it installs playwright), shell suggestions,
    # release notes and analytics.
    "aider": ("aider --message-file {prompt_file} --yes-always --no-git --no-pretty "
              "--no-check-update --no-detect-urls --no-suggest-shell-commands "
              "--no-show-release-notes --analytics-disable --map-tokens 0 "
              "--chat-history-file {scratch}/aider.chat.md "
              "--input-history-file {scratch}/aider.input.history {model_args} {files}"),
}
INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "aider": "python -m pip install aider-install && aider-install",
}
PLACEHOLDERS = ("{prompt_file}", "{workdir}", "{files}", "{model}", "{model_args}", "{scratch}")
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


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
        self._rates: list[float] = []  # USD per second of runs that reported their cost

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
        for e in history:  # resume: earlier runs of this agent set the pace for estimates
            p = e.proposal
            if (p.get("agent") == self.label and not p.get("cost_estimated")
                    and float(p.get("cost_usd") or 0) > 0 and float(p.get("seconds") or 0) > 0):
                self._rates.append(float(p["cost_usd"]) / float(p["seconds"]))

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
        stdout = _tail(out_file, 256_000)
        stderr = _tail(out_file.with_suffix(".err"), 4_000)
        report = read_report(stdout)
        meta: dict[str, Any] = {"agent": self.label, "exit_code": code, "seconds": seconds}
        description = report.description or f"{self.label} agent edit (no final message)"
        cost = self._account(report, seconds, timed_out, meta)
        if timed_out:
            meta["log_tail"] = (stderr or stdout)[-1000:]
            return Proposal(description, error=f"agent timed out after {self.timeout:g}s; its "
                            "process group was killed", cost_usd=cost, tokens=report.tokens,
                            meta=meta)
        fatal = fatal_reason(self.label, f"{report.error or ''}\n{stderr}\n{stdout[-20_000:]}")
        failed = code != 0 or report.error is not None
        if fatal and (failed or self.label == "aider"):
            raise ProposerError(fatal)  # no retry fixes a key; stop before the next one
        if not failed and self.label == "aider":
            report_error = aider_call_failure(f"{stdout[-20_000:]}\n{stderr}")
            if report_error:
                meta["log_tail"] = (stderr or stdout)[-1000:]
                return Proposal(description, error=report_error, cost_usd=cost,
                                tokens=report.tokens, meta=meta)
        if failed:
            detail = (report.error or stderr or stdout).strip()[-500:]
            meta["log_tail"] = (stderr or stdout)[-1000:]
            return Proposal(description, error=f"agent exited with code {code}: {detail}",
                            cost_usd=cost, tokens=report.tokens, meta=meta)
        return Proposal(description, cost_usd=cost, tokens=report.tokens, meta=meta)

    def _account(self, report: AgentReport, seconds: float, timed_out: bool,
                 meta: dict[str, Any]) -> float:
        """The run's cost: as reported, or for a run killed before it could report, an
        estimate at the cost per second of this agent's earlier reported runs."""
        if report.cost_reported:
            if report.cost_usd > 0 and seconds > 0:
                self._rates.append(report.cost_usd / seconds)
            return report.cost_usd
        if timed_out and self._rates:
            rate = max(self._rates[-20:])  # the costliest recent pace: never under-count
            meta["cost_estimated"] = (f"killed before it reported a cost; estimated at "
                                      f"${rate:.6f}/s over {seconds:g}s from earlier runs")
            return round(rate * seconds, 6)
        return 0.0

    def cost_unknown(self) -> str | None:
        if self.label == "claude":
            return None  # Claude Code's JSON result carries total_cost_usd
        what = "a custom agent command" if self.label == "command" else f"the {self.label} agent"
        return f"{what} does not report what it spends"


def _tail(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - limit))
        return fh.read().decode("utf-8", errors="replace")


def final_message(stdout: str) -> tuple[str, float, int, str | None]:
    """(description, cost_usd, tokens, agent-reported error) from the agent's stdout."""
    r = read_report(stdout)
    return r.description, r.cost_usd, r.tokens, r.error


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
