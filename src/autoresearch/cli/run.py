"""`autoresearch run`: check the tag and the task, build the loop, report how it ended."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from autoresearch.cli.common import config_path, console, load_args_task
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
from autoresearch.proposers import make_proposer
from autoresearch.proposers.base import check_cost_cap
from autoresearch.tags import restart_if_fixed, undo_on_failure
from autoresearch.task import CONFIG_NAME, ConfigError, TaskSpec
from autoresearch.workspace import Workspace


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

    task = load_args_task(args)
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
    ws.assert_tracked([config_path(args).relative_to(task.root).as_posix(), task.program,
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
        note = _check_tag(ws, task, config_path(args),
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


