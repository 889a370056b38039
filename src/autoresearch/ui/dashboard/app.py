"""The dashboard's server: a Starlette app over a tag's files, read-only.

Endpoints (JSON unless noted):

- ``GET /``: the page (static/index.html); ``/static/...``: its JS, CSS and uPlot.
- ``GET /api/status``: `ui.records.status_json` plus ``live`` (see `Tag.live`).
- ``GET /api/events``: server-sent events. ``status`` (the whole document) on connect and
  whenever the ledger is rewritten; ``rows`` (``{"from": n, "experiments": [...]}``)
  when rows were appended; ``live`` when the running state changes. The files are polled
  every `POLL_S` seconds, so a new row shows within about a second.
- ``GET /api/experiment/{id}``: `ui.records.show_json` (diff, reason, evidence, log tail).
- ``POST /api/stop``: SIGINT to the harness holding the tag's lock, as Ctrl-C would.
  Needs the token (header ``X-Autoresearch-Token``), always.

Read-only safety: the ledger is read with `Ledger.read`, which never writes and never
takes the tag's lock, so the loop runs on undisturbed; a torn last line (a harness killed
mid-write) is skipped, and a resumed loop's new rows simply appear. Bound to anything but
loopback, every request needs the token, and the page says so.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoresearch.ledger import Experiment, Ledger, LedgerError
from autoresearch.task import MetricSpec
from autoresearch.ui.records import record, show_json, status_json

STATIC = Path(__file__).parent / "static"
POLL_S = 0.5
TOKEN_HEADER = "x-autoresearch-token"


def lock_holder(lock: Path) -> int | None:
    """The pid of the harness holding `lock`, or None when no harness holds it.

    The pid the harness wrote into the file is trusted only if the kernel lists a lock on
    that file (/proc/locks) by that process: a stale pid from a SIGKILLed harness may have
    been reused by anything. The lock itself is never taken, so a loop starting at this
    moment is never refused because of the dashboard."""
    try:
        st = os.stat(lock)
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:  # no /proc: trust a pid that is alive
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid
    for line in table.splitlines():
        parts = line.split()
        if "->" in parts or len(parts) < 6:
            continue  # a waiter, not a holder
        dev_ino = parts[5].split(":")
        if len(dev_ino) == 3 and dev_ino[2] == str(st.st_ino) and parts[4] == str(pid):
            return pid
    return None


@dataclass
class Tag:
    """One tag's files, as the dashboard reads them."""

    name: str
    state: Path
    repo: Path
    metric: MetricSpec
    key: Path | None = None
    verified: bool = False

    def rows(self) -> list[Experiment]:
        ledger = Ledger(self.state, self.metric.name, self.key)
        try:
            rows = ledger.read()
            self.verified = self.key is not None
        except LedgerError:
            rows = Ledger(self.state, self.metric.name).read()  # shown, marked unverified
            self.verified = False
        return rows

    def stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.state / "results.jsonl")
            return st.st_size, st.st_mtime_ns
        except OSError:
            return (0, 0)

    def live(self) -> dict[str, Any]:
        """Is a harness running on the tag, and which experiments are in flight."""
        pid = lock_holder(self.state / "lock")
        running: list[dict[str, Any]] = []
        if pid is not None:
            for path in sorted((self.state / "inflight").glob("*.json")):
                try:  # one file per experiment in flight (decisions.point)
                    running.append(json.loads(path.read_text() or "{}"))
                except (OSError, ValueError):
                    continue
        first = running[0] if running else {}
        return {"running": pid is not None, "pid": pid,
                "experiment": first.get("id"), "description": first.get("description", ""),
                "in_flight": [{"id": r.get("id"), "description": r.get("description", "")}
                              for r in running],
                "verified": self.verified}


def _status(tag: Tag, rows: list[Experiment]) -> dict[str, Any]:
    return {**status_json(rows, tag.metric, tag.name), "live": tag.live()}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _events(tag: Tag, request: Request) -> AsyncIterator[str]:
    rows = tag.rows()
    ids = [e.id for e in rows]
    live = tag.live()
    yield _sse("status", {**status_json(rows, tag.metric, tag.name), "live": live})
    stamp = tag.stamp()
    while not await request.is_disconnected():
        await asyncio.sleep(POLL_S)
        now = tag.stamp()
        if now != stamp:
            stamp = now
            fresh = tag.rows()
            new_ids = [e.id for e in fresh]
            if new_ids[:len(ids)] == ids:
                yield _sse("rows", {"from": len(ids),
                                    "experiments": [record(e) for e in fresh[len(ids):]]})
            else:  # rewritten (a rebuild, a repair): start over
                yield _sse("status", {**status_json(fresh, tag.metric, tag.name),
                                      "live": tag.live()})
            ids = new_ids
        state = tag.live()
        if state != live:
            live = state
            yield _sse("live", live)
        else:
            yield ": keep-alive\n\n"  # lets the server notice a closed tab


def make_app(tag: Tag, token: str, public: bool) -> Starlette:
    """The dashboard for `tag`. `public`: bound beyond loopback, so reads need the token."""

    def authorized(request: Request) -> bool:
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def guard(request: Request) -> Response | None:
        if public and not authorized(request):
            return JSONResponse({"error": "this dashboard is reachable from the network; "
                                 "open it with ?token=TOKEN (printed when it started)"},
                                status_code=401)
        return None

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def status(request: Request) -> Response:
        return guard(request) or JSONResponse(_status(tag, tag.rows()))

    async def events(request: Request) -> Response:
        denied = guard(request)
        if denied:
            return denied
        return StreamingResponse(_events(tag, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def experiment(request: Request) -> Response:
        denied = guard(request)
        if denied:
            return denied
        wanted = int(request.path_params["exp_id"])
        for e in reversed(tag.rows()):
            if e.id == wanted:
                return JSONResponse(show_json(e, tag.metric, tag.name, tag.repo))
        return JSONResponse({"error": f"no experiment {wanted}"}, status_code=404)

    async def config(request: Request) -> Response:
        return JSONResponse({"tag": tag.name, "public": public})

    async def stop(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "the stop button needs the dashboard's token: open "
                                 "the URL printed by `autoresearch dashboard`"}, status_code=403)
        pid = lock_holder(tag.state / "lock")
        if pid is None:
            return JSONResponse({"error": f"no harness is running on tag {tag.name}"},
                                status_code=409)
        os.kill(pid, signal.SIGINT)  # the same as Ctrl-C: the current experiment ends cleanly
        return JSONResponse({"stopped": pid})

    return Starlette(routes=[
        Route("/", index),
        Route("/api/config", config),
        Route("/api/status", status),
        Route("/api/events", events),
        Route("/api/experiment/{exp_id:int}", experiment),
        Route("/api/stop", stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
