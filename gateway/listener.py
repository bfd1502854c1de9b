"""Client connections, capped below the open-file limit.

At the limit a process is in trouble everywhere at once: every accept fails (Tornado then logs a
traceback per attempt, hundreds a second), every provider call fails to open its socket, and SQLite
cannot open a journal. So the gateway raises its soft limit to the hard one at start, keeps room for
its provider connections, and answers connections beyond the cap with an immediate 503.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from .errors import openai_shape

log = logging.getLogger(__name__)

# The database (writer, reader, WAL, shm), the JSON log, listening sockets, DNS lookups, and slack.
RESERVED_FDS = 64
FLOOR = 16  # however low the limit, some clients must get in
WARN_EVERY_S = 10.0

_REFUSAL_BODY = json.dumps(openai_shape(
    "The gateway is at its limit of open connections; retry shortly.", "overloaded_error", "gateway_overloaded"))
_REFUSAL = (
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    f"Connection: close\r\nContent-Length: {len(_REFUSAL_BODY)}\r\n\r\n{_REFUSAL_BODY}"
).encode()


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard one (systemd's soft default is 1024); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_cap(configured: int | None, max_upstream: int) -> int:
    """MAX_CLIENT_CONNECTIONS if set, else what the open-file limit leaves after provider connections
    (in flight and pooled idle, each at most MAX_UPSTREAM_CONCURRENCY) and RESERVED_FDS."""
    if configured is not None:
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - 2 * max_upstream - RESERVED_FDS
    if room < max_upstream:
        log.warning("the open-file limit (%d) leaves room for only %d client connections with "
                    "MAX_UPSTREAM_CONCURRENCY=%d: raise it (ulimit -n) or lower MAX_UPSTREAM_CONCURRENCY",
                    soft, max(room, FLOOR), max_upstream)
    return max(room, FLOOR)


class CappedHTTPServer(HTTPServer):
    """Tornado's HTTPServer, answering connections past `max_connections` with 503 and closing them."""

    def initialize(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.open_connections = 0
        self.refused_connections = 0
        self._warned_at = 0.0

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        if self.open_connections >= self.max_connections:
            self._refuse(stream)
            return
        self.open_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.open_connections -= 1
        super().on_close(server_conn)

    def _refuse(self, stream: IOStream) -> None:
        self.refused_connections += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("refusing connections: %d open, the limit is %d (%d refused so far)",
                        self.open_connections, self.max_connections, self.refused_connections)
        try:
            # A fresh socket's send buffer always has room for this; no need to wait on the loop.
            stream.socket.send(_REFUSAL)
        except OSError:
            pass
        stream.close()

    def stats(self) -> dict[str, int]:
        return {"open": self.open_connections, "limit": self.max_connections, "refused": self.refused_connections}
