"""What every command shares: the console, loading the task, opening a tag read-only."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch.integrity.seal import (
    key_path,
)
from autoresearch.ledger import Ledger, LedgerError
from autoresearch.task import CONFIG_NAME, ConfigError, MetricSpec, TaskSpec, load_task
from autoresearch.workspace import STATE_DIR, git

console = Console(stderr=True)


def default_tag() -> str:
    return time.strftime("%b%d").lower()  # Karpathy's convention: the date, e.g. mar5



def config_path(args: argparse.Namespace) -> Path:
    return (Path(args.config) if args.config else Path.cwd() / CONFIG_NAME).resolve()


def load_args_task(args: argparse.Namespace) -> TaskSpec:
    return load_task(config_path(args))


def open_tag(args: argparse.Namespace) -> tuple[str, Ledger, MetricSpec, Path]:
    top = git("rev-parse", "--show-toplevel", cwd=Path.cwd(), check=False).strip()
    base = Path(top or Path.cwd()) / STATE_DIR
    tags = sorted((p for p in base.glob("*/results.jsonl")), key=lambda p: p.stat().st_mtime)
    if args.tag:
        tag = args.tag
    elif tags:
        tag = tags[-1].parent.name
    else:
        raise ConfigError(f"no experiments found under {base}. Start with `autoresearch run`.")
    state = base / tag
    if not (state / "results.jsonl").exists():
        known = ", ".join(p.parent.name for p in tags) or "none"
        raise ConfigError(f"no ledger for tag {tag!r} in {base} (tags: {known}).")
    meta = json.loads((state / "meta.json").read_text()) if (state / "meta.json").exists() else {}
    metric = MetricSpec(meta.get("metric", "metric"), meta.get("direction", "minimize"))
    # Read-only: a harness may be running on the tag, and its own stat check of the ledger
    # must not see us. A ledger that does not verify is still shown, with a warning.
    common = git("rev-parse", "--git-common-dir", cwd=state.parent.parent, check=False).strip()
    ledger = Ledger(state, metric.name, key_path((state.parent.parent / common).resolve(), tag)
                    if top and common else None)
    try:
        ledger.read()
    except LedgerError as exc:
        console.print(f"[yellow]warning:[/] {escape(exc.problem)}. Shown as found, "
                      f"unverified; `autoresearch rebuild --tag {tag}` rebuilds it from the "
                      "harness's commits.", highlight=False)
        ledger = Ledger(state, metric.name)
        ledger.read()
    return tag, ledger, metric, state


def print_json(doc: dict[str, object]) -> None:
    # Plain stdout, no rich markup: scripts and agents parse it.
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Go on with `--yes` or a "y" typed at a terminal; otherwise stop, naming the fix."""
    if yes:
        return
    if sys.stdin.isatty():
        console.print(f"{question} [y/N] ", end="")
        if input().strip().lower() in ("y", "yes"):
            return
    raise ConfigError(refusal)


def git_top(path: Path) -> Path | None:
    probe = path
    while not probe.exists():  # DIR may not exist yet: ask its nearest existing parent
        probe = probe.parent
    top = git("rev-parse", "--show-toplevel", cwd=probe, check=False).strip()
    return Path(top).resolve() if top else None


