"""`command:PATH`: any executable as the researcher (your own search, a script, an agent).

Contract with the executable:

- it runs with its working directory set to a plain export of the incumbent (no
  `.git`), inside the phase sandbox (network on, the system and venv read-only,
  its own executable and the context file readable, nothing else of yours), in
  its own process group, killed with its whole tree after `timeout` seconds
  (default 600);
- ``AUTORESEARCH_CONTEXT`` names a JSON file with the context (program, editable
  files, ledger history, last failure, feedback); ``AUTORESEARCH_EXPERIMENT``
  holds the experiment number;
- it edits files in place; the harness diffs the export and rejects anything
  outside the mutable surface;
- the last non-empty line it prints on stdout is the description; stderr goes
  to the log only;
- a non-zero exit or a timeout makes the proposal `invalid`, with the reason.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autoresearch.execution.process import log_tail
from autoresearch.proposers import register
from autoresearch.proposers.base import (
    Context,
    Proposal,
    Proposer,
    ProposerError,
    run_in_sandbox,
)
from autoresearch.task import ConfigError, TaskSpec

_OPTIONS = {"command", "timeout"}


class CommandProposer(Proposer):
    name = "command"

    def __init__(self, command: str, task: TaskSpec, timeout: float = 600.0):
        self.task = task
        self.timeout = timeout
        argv = shlex.split(command)
        if not argv:
            raise ConfigError("proposer: `command:` needs a program, e.g. "
                              "--proposer command:./propose.sh")
        exe = argv[0]
        # A relative path is relative to the repository; a bare name is looked up on PATH.
        if os.sep in exe:
            path = (task.root / exe).resolve() if not os.path.isabs(exe) else Path(exe)
            self.exe: str | None = str(path) if path.is_file() else None
        else:
            self.exe = shutil.which(exe)
        self.command = command
        self.argv = argv

    def setup(self, history: Any) -> None:
        if self.exe is None:
            raise ProposerError(f"proposer command {self.argv[0]!r} was not found (looked "
                                f"under {self.task.root} and on PATH). Check the path.")
        if not os.access(self.exe, os.X_OK):
            raise ProposerError(f"proposer command {self.exe} is not executable; "
                                f"run `chmod +x {self.exe}`.")
        self._tmp = Path(tempfile.mkdtemp(prefix="autoresearch-proposer-"))

    def propose(self, context: Context) -> Proposal:
        ctx_file = self._tmp / f"context-{context.experiment_id}.json"
        ctx_file.write_text(json.dumps(context.to_json(), indent=1))
        out = self._tmp / f"stdout-{context.experiment_id}.log"
        env = dict(os.environ, AUTORESEARCH_CONTEXT=str(ctx_file),
                   AUTORESEARCH_EXPERIMENT=str(context.experiment_id))
        cmd = shlex.join([str(self.exe), *self.argv[1:]])
        res = run_in_sandbox(context, cmd, out, self.timeout, env, writable=[self._tmp],
                             readonly=[Path(str(self.exe)).resolve()])
        if res.timed_out:
            return Proposal("(proposer timed out)",
                            error=f"proposer command killed after {self.timeout:.0f}s")
        text = out.read_text(encoding="utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if res.exit_code != 0:
            tail = log_tail(out.with_suffix(".err"), 20)
            return Proposal("(proposer failed)",
                            error=f"proposer command exited {res.exit_code}: {tail}")
        return Proposal(lines[-1] if lines else "(no description)")

    def cost_unknown(self) -> str | None:
        return "a proposer command does not report what it spends"

    def close(self) -> None:
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)


@register("command")
def _factory(arg: str | None, task: TaskSpec, options: dict[str, Any]) -> Proposer:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(f"proposer.{sorted(unknown)[0]}: unknown option for the command "
                          "proposer (known: command, timeout).")
    command = arg or options.get("command")
    if not command:
        raise ConfigError("proposer: the command proposer needs a program: "
                          "--proposer command:./propose.sh, or command = '...' in [proposer].")
    return CommandProposer(command, task, float(options.get("timeout", 600)))
