"""Wire model servers and a scorer together with real pipes, as the harness does.

For each model server k: one pipe carries requests (scorer writes, server reads), one
carries responses (server writes, scorer reads). The server gets its ends in
AUTORESEARCH_MODEL_IN / AUTORESEARCH_MODEL_OUT, the scorer gets all of its ends in
AUTORESEARCH_MODEL_FDS as "r0,w0;r1,w1" (rk: read server k's responses, wk: write its
requests). Each process receives only its own ends (Popen pass_fds), and this process
closes every end once the children hold theirs, so a side sees EOF when the other exits.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Wired:
    returncode: int
    stdout: str
    stderr: str
    server_codes: tuple[int | None, ...]  # None: still running after the scorer, killed
    server_logs: tuple[str, ...]  # each server's stdout and stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class Servers:
    procs: list[subprocess.Popen[bytes]]
    ends: list[tuple[int, int]]  # the scorer's (read responses, write requests), per server
    logs: list[IO[bytes]]  # each server's stdout and stderr


def start_servers(commands: Sequence[Sequence[str]], cwds: Sequence[Path],
                  env: Mapping[str, str]) -> Servers:
    """Start the model servers, each holding only its own ends of its two pipes."""
    procs: list[subprocess.Popen[bytes]] = []
    scorer_ends: list[tuple[int, int]] = []
    logs: list[IO[bytes]] = []
    try:
        for command, cwd in zip(commands, cwds):
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            scorer_ends.append((resp_r, req_w))
            logs.append(tempfile.TemporaryFile())
            server_env = {**env, "AUTORESEARCH_MODEL_IN": str(req_r),
                          "AUTORESEARCH_MODEL_OUT": str(resp_w)}
            try:
                procs.append(subprocess.Popen(
                    list(command), cwd=cwd, env=server_env, pass_fds=(req_r, resp_w),
                    stdin=subprocess.DEVNULL, stdout=logs[-1], stderr=subprocess.STDOUT))
            finally:
                os.close(req_r)  # the server's ends are the server's alone now
                os.close(resp_w)
    except BaseException:  # a server that would not start: undo the others
        for proc in procs:
            proc.kill()
            proc.wait()
        for fd in (fd for pair in scorer_ends for fd in pair):
            os.close(fd)
        raise
    return Servers(procs, scorer_ends, logs)


def run_wired(scorer: Sequence[str], servers: Sequence[Sequence[str]], *, scorer_cwd: Path,
              server_cwd: Path | Sequence[Path], env: Mapping[str, str],
              server_env: Mapping[str, str] | None = None, timeout: float = 120) -> Wired:
    """Run `scorer` against fresh `servers` (server 0 first); wait for all of them.

    The servers get `env` updated with `server_env` (e.g. a cache without the eval data).
    """
    cwds = [server_cwd] * len(servers) if isinstance(server_cwd, Path) else list(server_cwd)
    started = start_servers(servers, cwds, {**env, **(server_env or {})})
    procs, ends, logs = started.procs, started.ends, started.logs
    fds = ";".join(f"{r},{w}" for r, w in ends)
    try:
        scorer_proc = subprocess.Popen(
            list(scorer), cwd=scorer_cwd, env={**env, "AUTORESEARCH_MODEL_FDS": fds},
            pass_fds=[fd for pair in ends for fd in pair], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        for pair in ends:
            for fd in pair:
                os.close(fd)
    try:
        stdout, stderr = scorer_proc.communicate(timeout=timeout)
    finally:
        if scorer_proc.poll() is None:
            scorer_proc.kill()
            scorer_proc.communicate()
        codes: list[int | None] = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=10))  # they see EOF once the scorer is gone
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read().decode(errors="replace"))
        log.close()
    return Wired(scorer_proc.returncode, stdout, stderr, tuple(codes), tuple(texts))
