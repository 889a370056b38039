"""Turn a ``Context`` into prompt text, through user-overridable templates.

Templates are ``string.Template`` files (``$name`` placeholders) in
``autoresearch/proposers/prompts/``. A ``prompt_dir`` option points at a folder
whose files of the same name win: copy one, edit it, keep the rest default.
``string.Template`` rather than ``str.format`` because prompts are full of code,
and a stray ``{`` in a user's template must not be a crash at experiment 12.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template

from autoresearch.ledger import Experiment
from autoresearch.proposers.base import Context, ProposerError

TEMPLATES = ("system.txt", "user.txt", "retry.txt", "agent.txt")
NONE = "(none)"


def check_prompt_dir(prompt_dir: str | None, root: Path) -> Path | None:
    if not prompt_dir:
        return None
    path = Path(prompt_dir).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_dir():
        raise ProposerError(f"proposer.prompt_dir: {path} is not a folder. It should hold any of "
                            f"{', '.join(TEMPLATES)} to override the built-in prompts.")
    return path


def load_template(name: str, prompt_dir: Path | None) -> Template:
    if prompt_dir is not None and (prompt_dir / name).is_file():
        return Template((prompt_dir / name).read_text(encoding="utf-8"))
    ref = resources.files("autoresearch.proposers").joinpath("prompts").joinpath(name)
    return Template(ref.read_text(encoding="utf-8"))


def fence(text: str, info: str = "") -> str:
    """A fenced block that survives code containing fences itself."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    body = text if text.endswith("\n") else text + "\n"
    return f"{ticks}{info}\n{body}{ticks}"


def files_text(files: dict[str, str]) -> str:
    return "\n\n".join(f"{path}\n{fence(text)}" for path, text in files.items()) or NONE


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def history_text(history: Sequence[Experiment], limit: int) -> str:
    if not history:
        return "(no experiments yet)"
    rows = list(history)[-limit:] if limit > 0 else []
    lines = []
    if len(rows) < len(history):
        lines.append(f"({len(history) - len(rows)} earlier experiments omitted)")
    for e in rows:
        reason = f" [{' '.join(e.reason.split())[:160]}]" if e.reason else ""
        desc = " ".join(e.description.split())[:200]
        lines.append(f"#{e.id} {e.status} {_fmt(e.metric)} {desc}{reason}")
    return "\n".join(lines)


def kept_diffs(workdir: Path, history: Sequence[Experiment], paths: Sequence[str],
               limit: int = 5, max_chars: int = 4000) -> str:
    """The diffs of the most recent kept commits, read from git in the worktree."""
    kept = [e for e in history if e.status == "keep" and e.commit][-limit:]
    parts = []
    for e in kept:
        try:
            out = subprocess.run(
                ["git", "show", "--no-color", "--format=", "--unified=2", e.commit, "--",
                 *paths],
                cwd=workdir, capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.SubprocessError):
            continue  # a diff is context, not a requirement
        diff = out.stdout.strip() if out.returncode == 0 else ""
        if not diff:
            continue
        if len(diff) > max_chars:
            diff = diff[:max_chars] + "\n... (diff truncated)"
        parts.append(f"#{e.id} {' '.join(e.description.split())[:200]}\n{fence(diff, 'diff')}")
    return "\n\n".join(parts) or NONE


def variables(context: Context, history_limit: int, with_diffs: bool = True) -> dict[str, str]:
    metric = context.metric
    paths = list(context.files)
    better = "lower" if metric.direction == "minimize" else "higher"
    return {
        "program": context.program.strip(),
        "experiment_id": str(context.experiment_id),
        "metric": metric.name,
        "direction": f"{metric.direction}: {better} is better",
        "time_budget": f"{context.time_budget:g}",
        "editable": ", ".join(paths or context.editable),
        "history": history_text(context.history, history_limit),
        "kept_diffs": (kept_diffs(context.repo or context.workdir, context.history, paths)
                       if with_diffs else NONE),
        "last_failure": fence(context.last_failure.strip()) if context.last_failure else NONE,
        "feedback": context.feedback.strip() if context.feedback else NONE,
        "files": files_text(context.files),
    }
