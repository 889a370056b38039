"""The parser and the edge where domain errors become messages (and only here)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from rich.markup import escape

from autoresearch.cli.common import console, default_tag
from autoresearch.cli.inspect import cmd_dashboard, cmd_finalize, cmd_report, cmd_show, cmd_status
from autoresearch.cli.run import cmd_run
from autoresearch.cli.setup import cmd_clean, cmd_init, cmd_rebuild
from autoresearch.ledger import LedgerError
from autoresearch.proposers import ProposerError, available
from autoresearch.task import CONFIG_NAME, ConfigError
from autoresearch.workspace import WorkspaceError


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
    r.add_argument("--tag", default=default_tag(), help="run name; branch autoresearch/TAG")
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
                   "run (default: one per worker, 0 for the instant sweep; 0: propose only "
                   "when a worker is free)")
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
