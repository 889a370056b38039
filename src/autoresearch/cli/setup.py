"""Commands that make and unmake a tag's surroundings: init, rebuild, clean."""

from __future__ import annotations

import argparse
import shutil
from importlib import resources
from pathlib import Path

from rich.markup import escape

from autoresearch.cli.common import config_path, confirm, console, default_tag, git_top
from autoresearch.integrity.seal import (
    key_path,
)
from autoresearch.tags import remove_tag
from autoresearch.task import ConfigError
from autoresearch.workspace import Workspace, git


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
    clashes = [p.relative_to(src) for p in files if (dest / p.relative_to(src)).exists()]
    if clashes and not args.force:
        raise ConfigError(f"{dest} already has {', '.join(map(str, clashes))}; "
                          "nothing was written. Use --force to overwrite.")
    # A task needs its own repository root (paths resolve there, and the worktree is a
    # checkout of it). Below another repository's root, DIR becomes a repository of its own.
    fresh = git_top(dest) != dest
    if fresh:
        confirm(f"{dest} is not the root of a git repository. Run `git init` there and commit "
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
                  f"`autoresearch run --tag {default_tag()}` in {dest}.")
    return 0


# -- rebuild -------------------------------------------------------------------------
def cmd_rebuild(args: argparse.Namespace) -> int:
    from autoresearch.integrity.rebuild import rebuild

    ws = Workspace(Path.cwd(), args.tag)
    if not ws.state.exists() and not ws.branch_exists():
        raise ConfigError(f"no tag {args.tag!r} here: neither {ws.state} nor the branch "
                          f"{ws.branch} exists.")
    with ws.lock():
        done = rebuild(ws, config_path(args), force=args.force)
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
    confirm(f"Delete tag {ws.tag}: branch {ws.branch}, refs/autoresearch/{ws.tag}/, and "
             f"{ws.state} ({rows} experiments, their logs)? This cannot be undone.", args.yes,
             f"nothing was deleted. `autoresearch clean --tag {ws.tag} --yes` deletes the "
             f"tag's branch, refs and {ws.state} without asking.")
    with ws.lock():  # refused while a harness runs on the tag
        gone = remove_tag(ws)
    console.print(f"Removed {'; '.join(gone) or 'nothing'}.")
    return 0


