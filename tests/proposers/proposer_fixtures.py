"""Shared helpers: a scripted chat server on 127.0.0.1 and a Context over a tmp dir.

The server speaks real HTTP. Each request pops the next scripted ``Reply``
(status, JSON body, headers, optional delay) and is recorded, so a test can
assert both what the proposer did and what it sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoresearch.ledger import Experiment
from autoresearch.proposers.base import Context
from autoresearch.task import MetricSpec, TaskSpec

PROGRAM = "# Charter\nMinimize val_loss of the toy model. Only train.py may change.\n"
TRAIN = "lr = 0.02\nsteps = 100\n\n\ndef train():\n    return lr * steps\n"


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


def openai_answer(text: str, prompt_tokens: int = 1000, completion_tokens: int = 200) -> Reply:
    return Reply(200, {"id": "c1", "object": "chat.completion", "model": "test-model",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": prompt_tokens,
                                 "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}})


def anthropic_answer(text: str, input_tokens: int = 1000, output_tokens: int = 200) -> Reply:
    return Reply(200, {"id": "msg_1", "type": "message", "role": "assistant",
                       "model": "claude-test", "stop_reason": "end_turn",
                       "content": [{"type": "text", "text": text}],
                       "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}})


class ChatServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with server._lock:
                    server.seen.append(Seen(self.path, {k.lower(): v for k, v in
                                                        self.headers.items()},
                                            json.loads(raw or b"null")))
                    reply = (server.replies.pop(0) if server.replies else
                             Reply(500, {"error": {"message": "test script exhausted"}}))
                if reply.delay:
                    time.sleep(reply.delay)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # A short poll interval makes shutdown() quick, which keeps the suite fast.
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    (wd / "train.py").write_text(TRAIN)
    (wd / "prepare.py").write_text("DATA = 'fixed'\n")
    (wd / "program.md").write_text(PROGRAM)
    return wd


def make_task(root: Path, editable: tuple[str, ...] = ("train.py",)) -> TaskSpec:
    return TaskSpec(root=root, editable=editable, protected=("prepare.py",),
                    run="python train.py", metric=MetricSpec("val_loss", "minimize"),
                    time_budget=60.0, timeout=120.0)


def make_context(workdir: Path, *, editable: tuple[str, ...] = ("train.py",),
                 history: tuple[Experiment, ...] = (), feedback: str | None = None,
                 last_failure: str | None = None, experiment_id: int = 1) -> Context:
    files = {p.relative_to(workdir).as_posix(): p.read_text()
             for pattern in editable for p in sorted(workdir.glob(pattern))}
    return Context(experiment_id=experiment_id, workdir=workdir, program=PROGRAM, files=files,
                   editable=editable, metric=MetricSpec("val_loss", "minimize"),
                   time_budget=60.0, history=history, last_failure=last_failure,
                   feedback=feedback)
