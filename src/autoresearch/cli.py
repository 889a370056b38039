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

from autoresearch.execution.neighbours import registered
from autoresearch.execution.neighbours import warning as neighbour_warning
from autoresearch.integrity.seal import (
    PIN_NAME,
    changed_keys,
    digest,
    key_path,
    make_key,
    read_key,
    read_pin,
    write_pin,
)
from autoresearch.ledger import Ledger, LedgerError
from autoresearch.proposers import ProposerError, available, make_proposer
from autoresearch.proposers.base import check_cost_cap
from autoresearch.tags import remove_tag, restart_if_fixed, undo_on_failure
from autoresearch.task import CONFIG_NAME, ConfigError, MetricSpec, TaskSpec, load_task
from autoresearch.workspace import STATE_DIR, Workspace, WorkspaceError, git

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


def _confirm(question: str, yes: bool, refusal: str) -> None:
    """Go on with `--yes` or a "y" typed at a terminal; otherwise stop, naming the fix."""
    if yes:
        return
    if sys.stdin.isatty():
        console.print(f"{question} [y/N] ", end="")
        if input().strip().lower() in ("y", "yes"):
            return
    raise ConfigError(refusal)


def _git_top(path: Path) -> Path | None:
    probe = path
    while not probe.exists():  # DIR may not exist yet: ask its nearest existing parent
        probe = probe.parent
    top = git("rev-parse", "--show-toplevel", cwd=probe, check=False).strip()
    return Path(top).resolve() if top else None


def cmd_init(args: argparse.Namespace) -> int:
    dest = Path(args.dir).resolve()
    src = _template_dir(args.template)
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    clashes = [p.relative_to(src) for p in files if (dest / p.relative_to(src)).exists()]
    if clashes and not args.force:
        raise ConfigError(f"{dest} already has {', '.join(map(str, clashes))}; "
                          "nothing was written. Use --force to overwrite.")
    # A task needs its own repository root (paths resolve there, and the worktree is a
    # checkout of it). Below another repository's root, DIR becomes a repository of its own.
    fresh = _git_top(dest) != dest
    if fresh:
        _confirm(f"{dest} is not the root of a git repository. Run `git init` there and commit "
                 "the template's files?", args.yes,
                 f"{dest} is not the root of a git repository, and autoresearch uses git as "
                 "its undo. Nothing was written. Rerun with --yes to let init run `git init` "
                 "and commit the template's files, or run `git init` there yourself first.")
    dest.mkdir(parents=True, exist_ok=True)
    for p in files:
        rel = p.relative_to(src)
        # Dotfiles are shipped without their dot so packaging tools don't drop them.
        target = dest / (("." + rel.name) if rel.name == "gitignore" else rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
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


def _check_tag(ws: Workspace, task: TaskSpec, config: Path, accept: bool) -> str | None:
    """Before anything runs: the tag's ledger must verify, and the task file must be the
    one pinned when the tag started. A fresh tag is pinned here. Returns what was
    accepted, in words, or None."""
    key_file = key_path(ws.git_dir, ws.tag)
    rows = Ledger(ws.state, task.metric.name, key_file).read()  # raises; writes nothing
    pin_file = ws.state / PIN_NAME
    pin = read_pin(pin_file, read_key(key_file))
    data = config.read_bytes()
    again = f"`autoresearch run --tag {ws.tag} --accept-task-change`"
    if pin is not None and pin.sealed and pin.sha256 == digest(data):
        return None
    if pin is not None and not pin.sealed:
        if not accept:
            raise LedgerError(
                f"{pin_file} does not verify, so the task file tag {ws.tag} started with is "
                f"unknown. Nothing was adopted. If {config.name} as it is now is the tag's "
                f"task, {again} pins it again.")
        note = f"{pin_file} did not verify; {config.name} is pinned as it is now"
    elif pin is None:
        if rows and not accept:
            raise ConfigError(
                f"{pin_file} is missing, but tag {ws.tag} has {len(rows)} experiments, so "
                f"{config.name} cannot be checked against the task they were judged by. "
                f"Nothing was run. Next: {again} pins {config.name} as it is now.")
        note = f"{config.name} is pinned as it is now (the pin was missing)" if rows else ""
    else:
        keys = ", ".join(changed_keys(pin.text, data.decode("utf-8"))) or \
            "comments or formatting only"
        if not accept:
            raise ConfigError(
                f"{config} changed since tag {ws.tag} started; changed: {keys}. Nothing was "
                "run: every experiment of a tag is judged by one task. Next: restore the file "
                f"(the pinned text is in {pin_file}), start a new --tag, or {again} to go "
                "on under the new file.")
        note = f"accepted the change to {config.name} ({keys}); it is pinned from now on"
    write_pin(pin_file, make_key(key_file), data)
    return note or None


def cmd_run(args: argparse.Namespace) -> int:
    from autoresearch.decisions.policy import make_policy
    from autoresearch.loop import Loop, LoopOptions
    from autoresearch.ui.display import Display

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
    # Built before anything is written for the tag: a bad option leaves nothing behind.
    proposer = make_proposer(args.proposer, task, {
        "provider": args.provider, "model": args.model, "base_url": args.base_url,
        "agent": args.agent})
    unpriced = check_cost_cap(proposer, args.max_cost, args.accept_unknown_cost)
    if unpriced:
        console.print(f"[yellow]Warning:[/] {escape(unpriced)}.")
    policy = make_policy(task)
    fresh = not ws.state.exists() and not ws.branch_exists()
    with ws.lock():  # released before the loop takes it again; meanwhile no harness writes
        restarted = restart_if_fixed(ws, task.metric.name)
        if restarted:
            console.print(f"Restart: {escape(restarted)}.")
        note = _check_tag(ws, task, _config_path(args),
                          args.accept_task_change or bool(restarted))
    if note:
        console.print(f"Task file: {escape(note)}.")
    display = Display(task.metric, task.time_budget, console)
    ex = task.execution
    workers = args.workers if args.workers is not None else ex.workers
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more.")
    if args.pipeline is not None and args.pipeline < 0:
        raise ConfigError(f"--pipeline {args.pipeline}: give 0 or more.")
    loop = Loop(task, ws, proposer, policy, LoopOptions(
        max_experiments=args.max_experiments, hours=args.hours, max_failures=args.max_failures,
        max_cost=args.max_cost, seed=args.seed, workers=workers,
        pipeline=args.pipeline if args.pipeline is not None else ex.pipeline,
        devices=ex.devices, stale=ex.stale, backend=args.backend or ex.backend,
        ray_address=args.ray_address or ex.ray_address, num_cpus=ex.num_cpus,
        num_gpus=ex.num_gpus), display)
    (ws.state).mkdir(parents=True, exist_ok=True)
    (ws.state / "meta.json").write_text(json.dumps(
        {"metric": task.metric.name, "direction": task.metric.direction, "root": str(task.root)}))
    with registered(ws.root, ws.tag) as others, undo_on_failure(ws, fresh):
        if others:
            console.print(f"[yellow]warning:[/] {escape(neighbour_warning(others))}",
                          highlight=False)
        why = loop.run()
    console.print(f"Stopped: {why}.")
    if loop.signal is not None:
        console.print(f"Resume with the same command: `autoresearch run --tag {args.tag}`; "
                      "experiments that were stopped mid-run run again first.")
        return loop.exit_code
    from autoresearch.ui.report import render_status

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


def _print_json(doc: dict[str, object]) -> None:
    # Plain stdout, no rich markup: scripts and agents parse it.
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def cmd_status(args: argparse.Namespace) -> int:
    from autoresearch.ui.occupancy import live_summary, render_live
    from autoresearch.ui.report import render_status

    tag, ledger, metric, state = _open_tag(args)
    live = live_summary(ledger.experiments, state)
    if args.json:
        from autoresearch.ui.records import status_json

        _print_json({**status_json(ledger.experiments, metric, tag), "workers": live})
        return 0
    render_status(ledger.experiments, metric, tag, Console(), last=args.last, full=args.full)
    console.print(render_live(live), highlight=False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from autoresearch.ui.records import render_show, show_json

    tag, ledger, metric, state = _open_tag(args)
    exp = ledger.by_id(args.id)
    if exp is None:
        ids = [e.id for e in ledger.experiments]
        span = f"{ids[0]}..{ids[-1]}" if ids else "none yet"
        raise ConfigError(f"tag {tag} has no experiment {args.id} (experiments: {span}). "
                          f"`autoresearch status --tag {tag}` lists them.")
    repo = state.parent.parent
    if args.json:
        _print_json(show_json(exp, metric, tag, repo))
    else:
        render_show(exp, metric, repo, Console())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autoresearch.ui.report import plot_progress, progress_data

    tag, ledger, metric, state = _open_tag(args)
    out = Path(args.out) if args.out else state / "progress.png"
    data = progress_data(ledger.experiments, metric)
    plot_progress(data, metric, out, f"autoresearch/{tag}")
    from autoresearch.ui.occupancy import occupancy, plot_timeline

    occ = occupancy(ledger.experiments)
    timeline = plot_timeline(occ, out.with_name("utilization.png"), f"autoresearch/{tag}") \
        if occ else None
    if args.json:
        from autoresearch.ui.records import report_json

        _print_json(report_json(ledger.experiments, metric, tag, data, out))
        return 0
    console.print(f"Wrote {out}" + (f" and {timeline} (one lane per worker)" if timeline
                                     else ""))
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from autoresearch.review import finalize

    tag, ledger, metric, state = _open_tag(args)
    if args.confirm is not None and args.confirm < 1:
        raise ConfigError(f"--confirm {args.confirm}: give a number of re-runs, 1 or more.")
    task = _load(args) if (args.confirm or args.ablate) else None
    if task is None and _config_path(args).is_file():
        try:
            task = _load(args)
        except ConfigError:
            task = None  # the report's setup section then comes from the ledger alone
    ws = Workspace(state.parent.parent, tag)
    done = finalize(ws, ledger, metric, task, lambda m: console.print(escape(m)),
                    confirm_k=args.confirm or 0, ablate_changes=args.ablate, force=args.force,
                    seed=args.seed)
    console.print(f"Wrote {done.report} and branch {done.review.branch} "
                  f"({len(done.review.commits)} commits; its tree is the best kept tree).")
    console.print(f"Next: `git log -p {done.review.branch}`, then open a pull request with "
                  f"{done.report.name} as its body.")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from autoresearch.ui.dashboard import is_loopback, serve
    from autoresearch.ui.dashboard.app import Tag

    if not is_loopback(args.host) and not args.token:
        raise ConfigError(f"--host {args.host} makes the dashboard reachable from the network: "
                          "give --token SECRET too (every request then needs it).")
    tag, ledger, metric, state = _open_tag(args)
    view = Tag(tag, state, state.parent.parent, metric, ledger.key_path)
    try:
        serve(view, args.host, args.port, args.token,
              lambda m: print(m, flush=True))  # plain stdout: scripts read the URL
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                          "pick another --port (0: any free one).") from None
    return 0


# -- rebuild -------------------------------------------------------------------------
def cmd_rebuild(args: argparse.Namespace) -> int:
    from autoresearch.integrity.rebuild import rebuild

    ws = Workspace(Path.cwd(), args.tag)
    if not ws.state.exists() and not ws.branch_exists():
        raise ConfigError(f"no tag {args.tag!r} here: neither {ws.state} nor the branch "
                          f"{ws.branch} exists.")
    with ws.lock():
        done = rebuild(ws, _config_path(args), force=args.force)
    for path in done.moved:
        console.print(f"Set aside (not deleted): {path}")
    console.print(
        f"Rebuilt {len(done.records)} records from the harness's commits ({done.kept} on "
        f"{ws.branch}, {done.discarded} under refs/autoresearch/{ws.tag}/discarded/), sealed "
        f"with a fresh key in {key_path(ws.git_dir, ws.tag)}.")
    if done.missing:
        console.print(f"No commit holds experiments {', '.join(map(str, done.missing))} "
                      "(a re-measure has none): they are not in the rebuilt ledger.")
    console.print("Not recoverable from commits: holdout scores, secondary metrics, logs, "
                  "timings, costs and decision evidence (noise samples). Metrics are the "
                  "6-decimal values in the commit messages; rebuilt records carry "
                  'evidence {"rebuilt": true}.', highlight=False)
    console.print(f"Task file: {escape(done.pin)}.")
    console.print(f"Next: `autoresearch run --tag {ws.tag}` resumes from the rebuilt ledger.")
    return 0


# -- clean ---------------------------------------------------------------------------
def cmd_clean(args: argparse.Namespace) -> int:
    ws = Workspace(Path.cwd(), args.tag)
    key = key_path(ws.git_dir, ws.tag)
    if not ws.state.exists() and not ws.branch_exists() and not key.exists():
        raise ConfigError(f"no tag {args.tag!r} here: neither {ws.state} nor the branch "
                          f"{ws.branch} exists.")
    jsonl = ws.state / "results.jsonl"
    rows = len(jsonl.read_text().splitlines()) if jsonl.exists() else 0
    _confirm(f"Delete tag {ws.tag}: branch {ws.branch}, refs/autoresearch/{ws.tag}/, and "
             f"{ws.state} ({rows} experiments, their logs)? This cannot be undone.", args.yes,
             f"nothing was deleted. `autoresearch clean --tag {ws.tag} --yes` deletes the "
             f"tag's branch, refs and {ws.state} without asking.")
    with ws.lock():  # refused while a harness runs on the tag
        gone = remove_tag(ws)
    console.print(f"Removed {'; '.join(gone) or 'nothing'}.")
    return 0


# -- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoresearch", description=(
        "Run research experiments unattended: one mutable surface, one metric, "
        "a fixed time budget, git as the undo button."))
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("init", help="scaffold a task (autoresearch.toml, program.md) or a template")
    i.add_argument("dir", nargs="?", default=".", help="target directory (default: here)")
    i.add_argument("--template", default="basic", help="basic (default), bench (a timed "
                   "function, no ML), gpt, or a directory")
    i.add_argument("--force", action="store_true", help="overwrite existing files")
    i.add_argument("--commit", action="store_true", help="commit the files in an existing repo")
    i.add_argument("--yes", action="store_true", help="outside a repository: run `git init` "
                   "and commit without asking")
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
    r.add_argument("--accept-unknown-cost", action="store_true",
                   help="run even though --max-cost cannot see what the proposer spends "
                   "(an agent or command that reports no cost, a model with no price)")
    r.add_argument("--time-budget", type=float, help="override time_budget (seconds)")
    r.add_argument("--timeout", type=float, help="override timeout (seconds)")
    r.add_argument("--seed", type=int, default=42, help="base AUTORESEARCH_SEED (default 42)")
    r.add_argument("--policy", help="keep rule, overriding [decision] policy: noise-aware "
                   "(default) or strict (Karpathy's: any improvement)")
    for flag in ("--provider", "--model", "--base-url", "--agent"):
        r.add_argument(flag, help="proposer option (see docs/proposers.md)")
    r.add_argument("--workers", type=int, help="experiments run at once (default 1, or "
                   "[execution] workers); GPUs and cores are split between them")
    r.add_argument("--pipeline", type=int, help="proposals prepared ahead while experiments "
                   "run (default: one per worker; 0: propose only when a worker is free)")
    r.add_argument("--backend", choices=("local", "ray"), help="where experiments run "
                   "(default local; ray needs `pip install autoresearch[ray]`)")
    r.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS or a "
                   "local one)")
    r.add_argument("--accept-task-change", action="store_true", help="go on under a task "
                   "file that changed since the tag started (it is pinned from then on)")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("rebuild", help="set aside a ledger that does not verify and rebuild "
                       "it from the harness's commits")
    b.add_argument("--tag", required=True, help="run name")
    b.add_argument("--config", help=f"task file to pin if the old pin is unusable "
                   f"(default: ./{CONFIG_NAME})")
    b.add_argument("--force", action="store_true",
                   help="rebuild even a ledger that verifies (its holdouts and logs are lost)")
    b.set_defaults(func=cmd_rebuild)

    c = sub.add_parser("clean", help="delete a tag: its branch, refs, ledger and logs")
    c.add_argument("--tag", required=True, help="run name")
    c.add_argument("--yes", action="store_true", help="do not ask first")
    c.set_defaults(func=cmd_clean)

    for name, func, helptext in (("status", cmd_status, "table of a tag's experiments"),
                                 ("report", cmd_report, "write the progress plot")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--tag", help="run name (default: the most recent)")
        s.add_argument("--json", action="store_true", help="print JSON (see docs/json.md)")
        if name == "status":
            s.add_argument("--last", type=int, default=50, help="rows to show (default 50)")
            s.add_argument("--full", action="store_true", help="show whole reasons")
        else:
            s.add_argument("--out", help="PNG path (default: .autoresearch/TAG/progress.png)")
        s.set_defaults(func=func)
    d = sub.add_parser("dashboard", help="a live web page of a tag's experiments")
    d.add_argument("--tag", help="run name (default: the most recent)")
    d.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; "
                   "anything else needs --token)")
    d.add_argument("--token", help="secret for the stop button (default: a random one, "
                   "printed in the URL)")
    d.set_defaults(func=cmd_dashboard)
    f = sub.add_parser("finalize", help="the kept changes as branch autoresearch/TAG-review, "
                       "and REPORT.md")
    f.add_argument("--tag", help="run name (default: the most recent)")
    f.add_argument("--config", help=f"task file (default: ./{CONFIG_NAME})")
    f.add_argument("--confirm", type=int, metavar="K", help="re-run the baseline and the best "
                   "K times each, interleaved, and report the gain that survives")
    f.add_argument("--ablate", action="store_true", help="re-run the best without each kept "
                   "change in turn (K runs each with --confirm K)")
    f.add_argument("--force", action="store_true", help="replace an existing review branch")
    f.add_argument("--seed", type=int, default=42, help="base seed of the re-runs")
    f.set_defaults(func=cmd_finalize)
    w = sub.add_parser("show", help="one experiment: diff, reason, metrics, evidence, log tail")
    w.add_argument("id", type=int, help="experiment number (the # column of `status`)")
    w.add_argument("--tag", help="run name (default: the most recent)")
    w.add_argument("--json", action="store_true", help="print JSON (see docs/json.md)")
    w.set_defaults(func=cmd_show)
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
