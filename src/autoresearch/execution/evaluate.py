"""The split evaluate phase: a trusted scorer that never runs proposer code.

Three processes, each in its own sandbox, wired by pipes the harness makes:

- two **model servers** (`model_server`, e.g. `python prepare.py serve`), each in
  its own fresh export of the candidate's tree, with the handed-over weights
  read-only and no evaluation data. They import the editable code and answer
  token batches with logits over a pipe. Server 0 answers the probes and the
  reference batches, server 1 the scoring pass: two fresh processes, so a model
  that remembers what it was sent shows different outputs for the same batch.
- the **scorer** (`evaluate`, e.g. `python prepare.py score`) in an export of the
  tree from which the editable files were removed, with the evaluation data
  read-only. It holds the data and the byte table, computes the metric from the
  logits itself and prints it. Its output is the only metric source.

The contract with the processes (see `autoresearch.scoring`): a model server reads
requests from the fd in `AUTORESEARCH_MODEL_IN` and writes responses to the fd in
`AUTORESEARCH_MODEL_OUT`; the scorer finds them in `AUTORESEARCH_MODEL_FDS`
("r0,w0;r1,w1": it reads server k's responses from rk and writes its requests to wk).

The whole phase is limited to `timeout` (after the baseline: five times the
baseline's scoring time). A scorer killed there broke the limit (`violation`);
servers are killed when the scorer ends, however it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.execution.phase import Phase
from autoresearch.execution.process import RunResult, kill_group
from autoresearch.workspace import matches

if TYPE_CHECKING:
    from autoresearch.execution.measure import Guards

SERVERS = 2


def scorer_tree(guards: Guards, dest: Path) -> Path:
    """An export of the candidate's tree without the editable files (nothing to import)."""
    root = guards.export(dest)
    for path in sorted(root.rglob("*"), reverse=True):
        rel = path.relative_to(root).as_posix()
        if (path.is_file() or path.is_symlink()) and matches(rel, guards.editable):
            path.unlink()
    return root


def split_evaluate(scorer: str, server: str, log: Path, env: dict[str, str], timeout: float,
                   guards: Guards, on_start: Callable[[int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> RunResult:
    """Run the scorer against fresh model servers; the scorer's result is the phase's."""
    requests = [os.pipe() for _ in range(SERVERS)]  # scorer writes, server k reads
    responses = [os.pipe() for _ in range(SERVERS)]  # server k writes, scorer reads
    unclosed = {fd for pair in (*requests, *responses) for fd in pair}

    def close(fd: int) -> None:  # once only: a reused fd number belongs to someone else
        if fd in unclosed:
            unclosed.discard(fd)
            os.close(fd)

    procs = []
    try:
        for k in range(SERVERS):
            (req_r, _), (_, resp_w) = requests[k], responses[k]
            os.set_inheritable(req_r, True)
            os.set_inheritable(resp_w, True)
            model_env = {**env, "AUTORESEARCH_MODEL_IN": str(req_r),
                         "AUTORESEARCH_MODEL_OUT": str(resp_w),
                         "AUTORESEARCH_PHASE": "model"}
            tree = guards.export(guards.scratch / f"model{k}")
            procs.append(guards.phases.popen(Phase(
                "model", server, tree, log.with_suffix(f".model{k}.log"), timeout, model_env,
                guards.access("model"), pass_fds=(req_r, resp_w))))
        fds = ";".join(f"{responses[k][0]},{requests[k][1]}" for k in range(SERVERS))
        mine = tuple(fd for k in range(SERVERS) for fd in (responses[k][0], requests[k][1]))
        for fd in mine:
            os.set_inheritable(fd, True)
        # Our copies of the servers' ends go now, so each side sees EOF when the other dies.
        for k in range(SERVERS):
            close(requests[k][0])
            close(responses[k][1])
        phase = Phase("evaluate", scorer, scorer_tree(guards, guards.scratch / "score"), log,
                      timeout, {**env, "AUTORESEARCH_MODEL_FDS": fds},
                      guards.access("scorer"), pass_fds=mine)
        res = guards.phases.run(phase, on_start, None, should_stop)
    finally:
        for fd in list(unclosed):
            close(fd)
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc.pid, grace=1.0, reap=proc.poll)
            proc.wait()
    return res
