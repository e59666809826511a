"""Prometheus metrics over a tiny HTTP/1.1 server on the node's event loop.

``render(status)`` turns the Status dict (``node_status.StatusView.snapshot``)
into the text exposition format 0.0.4: ``# HELP``/``# TYPE`` lines, then
``name{label="value"} number``; every name starts with ``seedfl_``. Monotonic
numbers are counters ending in ``_total``; the rest are gauges. Peers are one
gauge labelled by membership state (alive, suspect, dead, left always
present), rejected updates and swarm event counters are counters labelled by
reason or event. Values that are unknown (loss before the first step,
divergence before a peer shares our state) are left out, not written as 0.

``MetricsServer`` answers ``GET /metrics`` (and HEAD) from a status provider,
``GET /healthz`` with 200 ``ok``, other paths with 404, other methods with
405 and unparseable requests with 400; every response closes the connection.
Slow or hostile clients are bounded: the request head must arrive within
``HEAD_TIMEOUT`` seconds and fit in ``MAX_HEAD`` bytes (else 408 / 431), a
response must drain within ``WRITE_TIMEOUT``, and at most ``MAX_CLIENTS``
connections are served at once (others are closed unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seedfl.core.errors import UsageError

log = logging.getLogger("seedfl.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CLIENTS = 16
PEER_STATES = ("alive", "suspect", "dead", "left")

StatusProvider = Callable[[], dict[str, Any]]

# Status key -> (metric name without prefix, type, help). Order is output order.
_TOP = [
    ("own_seq", "own_seq", "gauge", "Next sequence number of this node's own updates"),
    ("applied_total", "applied_total", "counter", "Updates applied to this node's model"),
    ("uptime_s", "uptime_seconds", "gauge", "Seconds since the node started"),
    ("loss_ema", "loss_ema", "gauge", "Exponential moving average of the training loss"),
    ("steps_per_s", "steps_per_second", "gauge", "Own optimisation steps per second"),
    ("divergence", "divergence", "gauge",
     "Relative replica divergence against peers with the same applied state"),
    ("payload_bytes_in", "payload_bytes_in_total", "counter", "Update payload bytes received"),
    ("payload_bytes_out", "payload_bytes_out_total", "counter", "Update payload bytes sent"),
    ("total_bytes_in", "bytes_in_total", "counter", "All bytes received, framing included"),
    ("total_bytes_out", "bytes_out_total", "counter", "All bytes sent, framing included"),
    ("updates_sent", "updates_sent_total", "counter", "Updates sent to peers"),
    ("updates_received", "updates_received_total", "counter", "New updates received"),
    ("updates_duplicate", "updates_duplicate_total", "counter",
     "Updates received that were already held"),
    ("catchup_progress", "catchup_progress", "gauge", "Catch-up progress, 0 to 1"),
    ("model_params", "model_params", "gauge", "Parameters in the model"),
    ("trainable_params", "trainable_params", "gauge", "Parameters that updates change"),
]
# Keys of status["metrics"] that only grow; everything else there is a gauge.
_METRIC_COUNTERS = {"clipped_codes", "apply_seconds_total", "dropped_frames_no_link",
                    "catchup_fetched_updates"}
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def _name(key: str) -> str:
    return "seedfl_" + _NAME_BAD.sub("_", key)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return repr(f)


def _label(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _family(name: str, kind: str, help_: str,
            samples: Iterable[tuple[dict[str, Any], Any]]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        tag = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{tag}}} {_value(value)}" if tag else f"{name} {_value(value)}")
    return lines if len(lines) > 2 else []


def render(status: dict[str, Any]) -> str:
    """The exposition text (format 0.0.4) for one Status dict."""
    out = _family("seedfl_node_info", "gauge", "Identity and phase of this node (always 1)", [(
        {k: status.get(k, "") for k in ("node_id", "name", "software_version",
                                          "protocol_version", "state", "catchup_state")}, 1)])
    for key, name, kind, help_ in _TOP:
        out += _family(_name(name), kind, help_, [({}, status.get(key))])
    states = dict.fromkeys(PEER_STATES, 0)
    for peer in status.get("peers", []):
        states[peer["state"]] = states.get(peer["state"], 0) + 1
    out += _family("seedfl_peers", "gauge", "Known peers by membership state",
                   [({"state": s}, n) for s, n in states.items()])
    rejected = status.get("updates_rejected") or {}
    out += _family("seedfl_updates_rejected_total", "counter", "Updates refused, by reason",
                   [({"reason": r}, n) for r, n in sorted(rejected.items())])
    metrics = status.get("metrics") or {}
    events = sorted((k[len("counter_"):], v) for k, v in metrics.items()
                    if k.startswith("counter_"))
    out += _family("seedfl_swarm_events_total", "counter", "Swarm state machine event counters",
                   [({"event": e}, v) for e, v in events])
    for key in sorted(metrics):
        if key.startswith("counter_"):
            continue
        counter = key in _METRIC_COUNTERS
        name = _name(key if not counter or key.endswith("_total") else key + "_total")
        out += _family(name, "counter" if counter else "gauge",
                       f"Node metric {key}", [({}, metrics[key])])
    return "\n".join(out) + "\n"


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
