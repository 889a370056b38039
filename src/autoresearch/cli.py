"""The `autoresearch` command line. Domain errors become messages here, and only here."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch.ledger import Ledger, LedgerError
from autoresearch.proposers import ProposerError, available, make_proposer
from autoresearch.task import CONFIG_NAME, ConfigError, MetricSpec, TaskSpec, load_task
from autoresearch.workspace import STATE_DIR, WorkspaceError, git

console = Console(stderr=True)


def _default_tag() -> str:
    return time.strftime("%b%d").lower()  # Karpathy's convention: the date, e.g. mar5


# -- init ----------------------------------------------------------------------------
def _template_dir(name: str) -> Path:
    path = Path(name)
    if path.is_dir():
        return path
    root = Path(str(resources.files("autoresearch") / "templates"))
    if not (root / name).is_dir():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise ConfigError(f"--template: no template {name!r}. Choose one of: {', '.join(names)}, "
                          "or give a directory to copy.")
    return root / name


def cmd_init(args: argparse.Namespace) -> int:
    dest = Path(args.dir).resolve()
    src = _template_dir(args.template)
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    dest.mkdir(parents=True, exist_ok=True)
    clashes = [p.relative_to(src) for p in files if (dest / p.relative_to(src)).exists()]
    if clashes and not args.force:
        raise ConfigError(f"{dest} already has {', '.join(map(str, clashes))}; "
                          "nothing was written. Use --force to overwrite.")
    for p in files:
        rel = p.relative_to(src)
        # Dotfiles are shipped without their dot so packaging tools don't drop them.
        target = dest / (("." + rel.name) if rel.name == "gitignore" else rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    # A task needs its own repository root (paths resolve there, and the worktree is a
    # checkout of it). Below another repository's root, DIR becomes a repository of its own.
    top = git("rev-parse", "--show-toplevel", cwd=dest, check=False).strip()
    fresh = not top or Path(top).resolve() != dest
    if fresh:
        git("init", "-q", cwd=dest)
    if fresh or args.commit:  # only the files written here, never the user's other work
        written = [str(dest / (("." + p.name) if p.name == "gitignore" else p.relative_to(src)))
                   for p in files]
        git("add", "--", *written, cwd=dest)
        git("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost",
            "commit", "-q", "-m", f"autoresearch: {src.name} template", "--", *written,
            cwd=dest)
    console.print(f"Wrote the {src.name} template to {dest}.")
    console.print("Next: read program.md, adjust autoresearch.toml, then run "
                  f"`autoresearch run --tag {_default_tag()}` in {dest}.")
    return 0


# -- run -----------------------------------------------------------------------------
def _config_path(args: argparse.Namespace) -> Path:
    return (Path(args.config) if args.config else Path.cwd() / CONFIG_NAME).resolve()


def _load(args: argparse.Namespace) -> TaskSpec:
    return load_task(_config_path(args))


def cmd_run(args: argparse.Namespace) -> int:
    from autoresearch.decide import make_policy
    from autoresearch.display import Display
    from autoresearch.loop import Loop, LoopOptions
    from autoresearch.workspace import Workspace

    task = _load(args)
    if args.time_budget is not None:
        budget = float(args.time_budget)
        if not math.isfinite(budget) or budget <= 0:
            raise ConfigError(f"--time-budget {args.time_budget}: give a positive number of "
                              "seconds.")
        task = replace(task, time_budget=budget,
                       timeout=max(task.timeout, 2 * budget, budget + 60))
    if args.timeout is not None:
        if args.timeout < task.time_budget:
            raise ConfigError(f"--timeout {args.timeout} is below the time budget "
                              f"{task.time_budget}.")
        task = replace(task, timeout=float(args.timeout))
    if args.policy:
        task = replace(task, decision={**task.decision, "policy": args.policy})
    ws = Workspace(task.root, args.tag)
    if ws.root.resolve() != task.root.resolve():
        raise ConfigError(f"{CONFIG_NAME} must be at the repository root ({ws.root}), where "
                          f"its paths are resolved; it is in {task.root}.")
    ws.assert_clean()
    ws.assert_tracked([_config_path(args).relative_to(task.root).as_posix(), task.program,
                       *task.protected], task.editable)
    proposer = make_proposer(args.proposer, task, {
        "provider": args.provider, "model": args.model, "base_url": args.base_url,
        "agent": args.agent})
    display = Display(task.metric, task.time_budget, console)
    loop = Loop(task, ws, proposer, make_policy(task), LoopOptions(
        max_experiments=args.max_experiments, hours=args.hours, max_failures=args.max_failures,
        max_cost=args.max_cost, seed=args.seed), display)
    (ws.state).mkdir(parents=True, exist_ok=True)
    (ws.state / "meta.json").write_text(json.dumps(
        {"metric": task.metric.name, "direction": task.metric.direction, "root": str(task.root)}))
    why = loop.run()
    console.print(f"Stopped: {why}.")
    from autoresearch.report import render_status

    render_status(loop.ledger.experiments, task.metric, args.tag, console, last=20)
    console.print(f"Branch autoresearch/{args.tag} holds the best kept commit; ledger in "
                  f"{ws.state}. Next: `autoresearch report --tag {args.tag}`.")
    return 0 if "baseline failed" not in why else 1


# -- status / report -------------------------------------------------------------------
def _open_tag(args: argparse.Namespace) -> tuple[str, Ledger, MetricSpec, Path]:
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
    ledger = Ledger(state, metric.name)
    ledger.load()
    return tag, ledger, metric, state


def cmd_status(args: argparse.Namespace) -> int:
    from autoresearch.report import render_status

    tag, ledger, metric, _ = _open_tag(args)
    render_status(ledger.experiments, metric, tag, Console(), last=args.last)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autoresearch.report import plot_progress, progress_data

    tag, ledger, metric, state = _open_tag(args)
    out = Path(args.out) if args.out else state / "progress.png"
    plot_progress(progress_data(ledger.experiments, metric), metric, out, f"autoresearch/{tag}")
    console.print(f"Wrote {out}")
    return 0


# -- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoresearch", description=(
        "Run research experiments unattended: one mutable surface, one metric, "
        "a fixed time budget, git as the undo button."))
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("init", help="scaffold a task (autoresearch.toml, program.md) or a template")
    i.add_argument("dir", nargs="?", default=".", help="target directory (default: here)")
    i.add_argument("--template", default="basic", help="basic (default), gpt, or a directory")
    i.add_argument("--force", action="store_true", help="overwrite existing files")
    i.add_argument("--commit", action="store_true", help="commit the files in an existing repo")
    i.set_defaults(func=cmd_init)

    r = sub.add_parser("run", help="run the experiment loop on a tag (resumes if it exists)")
    r.add_argument("--tag", default=_default_tag(), help="run name; branch autoresearch/TAG")
    r.add_argument("--config", help=f"task file (default: ./{CONFIG_NAME})")
    r.add_argument("--proposer", help=f"one of {', '.join(available())}; command:PATH for a script")
    r.add_argument("--max-experiments", type=int, help="stop after N experiments in the tag")
    r.add_argument("--hours", type=float, help="stop after H hours")
    r.add_argument("--max-failures", type=int, default=10,
                   help="stop after N failed experiments in a row (default 10)")
    r.add_argument("--max-cost", type=float, help="stop once proposals cost this many USD")
    r.add_argument("--time-budget", type=float, help="override time_budget (seconds)")
    r.add_argument("--timeout", type=float, help="override timeout (seconds)")
    r.add_argument("--seed", type=int, default=42, help="base AUTORESEARCH_SEED (default 42)")
    r.add_argument("--policy", help="keep rule, overriding [decision] policy: noise-aware "
                   "(default) or strict (Karpathy's: any improvement)")
    for flag in ("--provider", "--model", "--base-url", "--agent"):
        r.add_argument(flag, help="proposer option (see docs/proposers.md)")
    r.set_defaults(func=cmd_run)

    for name, func, helptext in (("status", cmd_status, "table of a tag's experiments"),
                                 ("report", cmd_report, "write the progress plot")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--tag", help="run name (default: the most recent)")
        if name == "status":
            s.add_argument("--last", type=int, default=50, help="rows to show (default 50)")
        else:
            s.add_argument("--out", help="PNG path (default: .autoresearch/TAG/progress.png)")
        s.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, WorkspaceError, ProposerError, LedgerError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except subprocess.CalledProcessError as exc:  # pragma: no cover - unexpected tool failure
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        console.print("aborted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
