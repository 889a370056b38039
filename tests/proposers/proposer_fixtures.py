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


def openai_reasoning_answer(content: Any, *, finish_reason: str = "stop", prompt_tokens: int = 1000,
                            completion_tokens: int = 500, cached_tokens: int = 0,
                            reasoning_tokens: int = 300, refusal: str | None = None) -> Reply:
    """A ChatCompletion as `openai.types.chat.ChatCompletion` types it for o-series/gpt-5:
    usage details with cached and reasoning tokens, `refusal` on the message."""
    return Reply(200, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764460800,
        "model": "gpt-5.4-mini-2026-03-17", "service_tier": "default",
        "system_fingerprint": None,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal,
                                 "annotations": []}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning_tokens,
                                                "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}}})


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    """OpenAI's error body: {"error": {message, type, param, code}}."""
    return Reply(status, {"error": {"message": message, "type": type_, "param": param,
                                    "code": code}}, headers=headers or {})


def anthropic_message(blocks: list[dict[str, Any]], *, stop_reason: str = "end_turn",
                      usage: dict[str, Any] | None = None) -> Reply:
    """An `anthropic.types.Message`, blocks as given (thinking, redacted_thinking, text)."""
    return Reply(200, {"id": "msg_01", "type": "message", "role": "assistant",
                       "model": "claude-sonnet-5-5", "content": blocks,
                       "stop_reason": stop_reason, "stop_sequence": None,
                       "usage": usage if usage is not None else
                       {"input_tokens": 100, "output_tokens": 50,
                        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})


def anthropic_error(status: int, message: str, type_: str = "invalid_request_error",
                    headers: dict[str, str] | None = None) -> Reply:
    """Anthropic's error body: {"type": "error", "error": {type, message}, request_id}."""
    return Reply(status, {"type": "error", "error": {"type": type_, "message": message},
                          "request_id": "req_01"}, headers=headers or {})


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
