"""`autoresearch dashboard`: a night, live in the browser (see `app` for the endpoints).

Starlette and uvicorn are the `dashboard` extra (`pip install 'autoresearch[dashboard]'`);
the chart library (uPlot, MIT) is vendored in `static/`, so the page needs no network.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Callable

from autoresearch.ui.dashboard.app import Tag


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(tag: Tag, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          say: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Port 0 picks a free port; the URL printed is the real one."""
    try:
        import uvicorn

        from autoresearch.ui.dashboard.app import make_app
    except ImportError as exc:
        raise ImportError(f"the dashboard needs its extra: pip install 'autoresearch[dashboard]' "
                          f"({exc.name} is missing)") from None
    public = not is_loopback(host)
    token = token or secrets.token_urlsafe(16)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    say(f"dashboard for tag {tag.name}: http://{shown}:{bound}/?token={token}")
    if public:
        say("bound beyond loopback: every request needs the token in the URL above.")
    config = uvicorn.Config(make_app(tag, token, public), log_level="warning",
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
