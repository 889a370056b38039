"""Commands that read a tag: status, show, report, finalize, dashboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from autoresearch.cli.common import config_path, console, load_args_task, open_tag, print_json
from autoresearch.task import ConfigError
from autoresearch.workspace import Workspace


# -- status / report -------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from autoresearch.ui.occupancy import live_summary, render_live
    from autoresearch.ui.report import render_status

    tag, ledger, metric, state = open_tag(args)
    live = live_summary(ledger.experiments, state)
    if args.json:
        from autoresearch.ui.records import status_json

        print_json({**status_json(ledger.experiments, metric, tag), "workers": live})
        return 0
    render_status(ledger.experiments, metric, tag, Console(), last=args.last, full=args.full)
    console.print(render_live(live), highlight=False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from autoresearch.ui.records import render_show, show_json

    tag, ledger, metric, state = open_tag(args)
    exp = ledger.by_id(args.id)
    if exp is None:
        ids = [e.id for e in ledger.experiments]
        span = f"{ids[0]}..{ids[-1]}" if ids else "none yet"
        raise ConfigError(f"tag {tag} has no experiment {args.id} (experiments: {span}). "
                          f"`autoresearch status --tag {tag}` lists them.")
    repo = state.parent.parent
    if args.json:
        print_json(show_json(exp, metric, tag, repo))
    else:
        render_show(exp, metric, repo, Console())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autoresearch.ui.report import plot_progress, progress_data

    tag, ledger, metric, state = open_tag(args)
    out = Path(args.out) if args.out else state / "progress.png"
    data = progress_data(ledger.experiments, metric)
    plot_progress(data, metric, out, f"autoresearch/{tag}")
    from autoresearch.ui.occupancy import occupancy, plot_timeline

    occ = occupancy(ledger.experiments)
    timeline = plot_timeline(occ, out.with_name("utilization.png"), f"autoresearch/{tag}") \
        if occ else None
    if args.json:
        from autoresearch.ui.records import report_json

        print_json(report_json(ledger.experiments, metric, tag, data, out))
        return 0
    console.print(f"Wrote {out}" + (f" and {timeline} (one lane per worker)" if timeline
                                     else ""))
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from autoresearch.review import finalize

    tag, ledger, metric, state = open_tag(args)
    if args.confirm is not None and args.confirm < 1:
        raise ConfigError(f"--confirm {args.confirm}: give a number of re-runs, 1 or more.")
    task = load_args_task(args) if (args.confirm or args.ablate) else None
    if task is None and config_path(args).is_file():
        try:
            task = load_args_task(args)
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
    tag, ledger, metric, state = open_tag(args)
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


