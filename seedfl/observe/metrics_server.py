"""The node's ``/metrics`` endpoint: a small HTTP/1.1 server on its event loop.

``MetricsServer`` answers ``GET /metrics`` (and HEAD) with ``metrics.render``
of a status provider, ``GET /healthz`` with 200 ``ok``, other paths with 404,
other methods with 405 and unparseable requests with 400; every response
closes the connection. It is our own (rather than prometheus_client's
threaded ``start_http_server``) because it runs on the node's loop, where the
status is read consistently, and because slow or hostile clients are bounded:
the request head must arrive within ``HEAD_TIMEOUT`` seconds and fit in
``MAX_HEAD`` bytes (else 408 / 431), a response must drain within
``WRITE_TIMEOUT``, and at most ``MAX_CLIENTS`` connections are served at once
(others are closed unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from seedfl.core.errors import UsageError
from seedfl.core.status import NodeStatus
from seedfl.observe.metrics import CONTENT_TYPE, render

__all__ = ["MetricsServer", "start_metrics"]

log = logging.getLogger("seedfl.metrics")

MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CLIENTS = 16

StatusProvider = Callable[[], NodeStatus]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz``; ``port`` is the bound port after ``start``."""

    def __init__(self, provider: StatusProvider, host: str = "127.0.0.1", port: int = 0) -> None:
        self.provider = provider
        self.host = host or "127.0.0.1"
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._active = 0

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CLIENTS:
            writer.close()
            return
        self._active += 1
        try:
            status, body, head_only = await self._answer(reader)
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                    f"Content-Type: {CONTENT_TYPE if status == 200 else 'text/plain'}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("ascii") + (b"" if head_only else body))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, OSError):
            pass  # the client went away or stalled; nothing to tell it
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except TimeoutError:
            return 408, b"request head too slow\n", False
        except asyncio.LimitOverrunError:
            return 431, b"request head too large\n", False
        except asyncio.IncompleteReadError:
            return 400, b"incomplete request\n", False
        parts = raw.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, b"bad request line\n", False
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", False
        self.requests += 1
        path = target.split("?", 1)[0]
        if path == "/healthz":
            return 200, b"ok\n", method == "HEAD"
        if path != "/metrics":
            return 404, b"not found; try /metrics\n", False
        try:
            body = render(self.provider()).encode("utf-8")
        except Exception as exc:  # a broken snapshot must not take the node down
            log.warning("metrics unavailable: %s: %s", type(exc).__name__, exc)
            return 500, b"metrics unavailable\n", False
        return 200, body, method == "HEAD"


async def start_metrics(port: int | None, host: str, provider: StatusProvider,
                        state_path: Path) -> MetricsServer | None:
    """The node's hook: serve on ``port`` (None = off, 0 = any free port).

    Writes ``<state>/metrics.addr`` (host:port) once bound so tools and tests
    can find an ephemeral port; a wildcard host is written as 127.0.0.1. A
    port that cannot be bound is a UsageError (the CLI exits 2 saying so).
    """
    if port is None:
        (state_path / "metrics.addr").unlink(missing_ok=True)
        return None
    server = MetricsServer(provider, host.strip("[]") or "127.0.0.1", port)
    try:
        await server.start()
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot serve metrics on {server.address}: {why}; "
                         "choose another --metrics-port (0 = any free port)") from None
    shown = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
    (state_path / "metrics.addr").write_text(f"{shown}:{server.port}\n")
    log.info("metrics on http://%s:%d/metrics", shown, server.port)
    return server
