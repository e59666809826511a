"""The Prometheus endpoint: exposition text, HTTP answers and limits.

The server runs on an event loop in a background thread, as it does inside a
node; the test thread talks to it with urllib and raw sockets on loopback.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from seedfl.core.errors import UsageError
from seedfl.core.status import NodeStatus, PeerStatus
from seedfl.net.control import status_from_proto
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.observe import metrics_server as metrics_http
from seedfl.observe.metrics import render
from seedfl.observe.metrics_server import MetricsServer, start_metrics

BLANK = status_from_proto(pb.StatusReply())  # every field at its zero value


def _peer(state: str) -> PeerStatus:
    return replace(BLANK_PEER, state=state)


BLANK_PEER = PeerStatus(node_id="", name="", address="", state="", last_seen_s=-1.0,
                        rtt_ms=0.0, updates_from=0, lag=0)
STATUS = replace(
    BLANK, node_id="ab" * 16, name='node "one"', software_version="0.1.0",
    protocol_version=1, state="training", catchup_state="done",
    uptime_s=12.5, own_seq=42, applied_total=1234, loss_ema=0.6931,
    steps_per_s=2.5, divergence=None,
    payload_bytes_in=1200, payload_bytes_out=42,
    total_bytes_in=9000, total_bytes_out=3000,
    updates_sent=40, updates_received=1192, updates_duplicate=7,
    updates_rejected={"gap": 3, "rpc_hello": 1},
    peers=(_peer("alive"), _peer("alive"), _peer("suspect")),
    catchup_progress=1.0, model_params=1000, trainable_params=800,
    metrics={"counter_suspected": 2.0, "counter_sent_updates": 40.0,
             "clipped_codes": 5.0, "coalescing_ratio": 1.5, "apply_seconds_total": 0.25,
             "last_g": float("nan"), "catchup_fetched_updates": 7.0},
)

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, tuple[tuple[str, str], ...]], str]]:
    """(family -> type, (name, labels) -> value) of an exposition; checks HELP/TYPE order."""
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in types, line
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.groups()
            assert name in types, f"sample before its TYPE: {line}"
            key = (name, tuple(_LABEL.findall(labels or "")))
            assert key not in samples, f"duplicate sample {line}"
            samples[key] = value
    return types, samples


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(5)
    lp.close()


def on(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(10)


@pytest.fixture
def server(loop: asyncio.AbstractEventLoop) -> Iterator[MetricsServer]:
    srv = MetricsServer(lambda: STATUS, "127.0.0.1", 0)
    on(loop, srv.start())
    yield srv
    on(loop, srv.close())


def get(srv: MetricsServer, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://{srv.address}{path}", timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def raw(srv: MetricsServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_metrics_values_and_types(server: MetricsServer) -> None:
    code, headers, body = get(server, "/metrics")
    assert code == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    types, samples = parse(body.decode())
    assert all(n.startswith("seedfl_") for n in types)
    assert all(n.endswith("_total") for n, k in types.items() if k == "counter")
    expect = {
        ("seedfl_own_seq", "gauge", (), "42.0"),
        ("seedfl_applied_total", "counter", (), "1234.0"),
        ("seedfl_loss_ema", "gauge", (), "0.6931"),
        ("seedfl_steps_per_second", "gauge", (), "2.5"),
        ("seedfl_uptime_seconds", "gauge", (), "12.5"),
        ("seedfl_payload_bytes_in_total", "counter", (), "1200.0"),
        ("seedfl_bytes_out_total", "counter", (), "3000.0"),
        ("seedfl_updates_received_total", "counter", (), "1192.0"),
        ("seedfl_updates_duplicate_total", "counter", (), "7.0"),
        ("seedfl_updates_rejected_total", "counter", (("reason", "gap"),), "3.0"),
        ("seedfl_updates_rejected_total", "counter", (("reason", "rpc_hello"),), "1.0"),
        ("seedfl_peers", "gauge", (("state", "alive"),), "2.0"),
        ("seedfl_peers", "gauge", (("state", "suspect"),), "1.0"),
        ("seedfl_peers", "gauge", (("state", "dead"),), "0.0"),
        ("seedfl_peers", "gauge", (("state", "left"),), "0.0"),
        ("seedfl_swarm_events_total", "counter", (("event", "suspected"),), "2.0"),
        ("seedfl_swarm_events_total", "counter", (("event", "sent_updates"),), "40.0"),
        ("seedfl_clipped_codes_total", "counter", (), "5.0"),
        ("seedfl_apply_seconds_total", "counter", (), "0.25"),
        ("seedfl_catchup_fetched_updates_total", "counter", (), "7.0"),
        ("seedfl_coalescing_ratio", "gauge", (), "1.5"),
        ("seedfl_last_g", "gauge", (), "NaN"),
        ("seedfl_model_params", "gauge", (), "1000.0"),
    }
    for name, kind, labels, value in expect:
        assert types[name] == kind, name
        assert samples[(name, labels)] == value, (name, labels)
    # Unknown values are absent, not zero.
    assert "seedfl_divergence" not in types
    info = dict(next(lb for (n, lb) in samples if n == "seedfl_node_info"))
    assert info["name"] == 'node \\"one\\"' and info["state"] == "training"


def test_healthz_404_405_and_head(server: MetricsServer) -> None:
    assert get(server, "/healthz")[::2] == (200, b"ok\n")
    assert get(server, "/metrics/x")[0] == 404
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics?name[]=x")[0] == 200  # query strings are ignored
    reply = raw(server, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ")
    reply = raw(server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert int(re.search(rb"Content-Length: (\d+)", head)[1]) == len(render(STATUS))  # type: ignore[index]


def test_bad_and_oversized_requests_are_refused(server: MetricsServer) -> None:
    assert raw(server, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"GET /metrics SPDY/3\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (metrics_http.MAX_HEAD + 4000)
    reply = raw(server, huge)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:60]
    assert b"seedfl_own_seq" not in reply
    # The server is still healthy afterwards.
    assert get(server, "/healthz")[0] == 200
    assert server.requests >= 1


def test_silent_client_gets_408(server: MetricsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "HEAD_TIMEOUT", 0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /metr")  # and then nothing more
        assert s.recv(4096).startswith(b"HTTP/1.1 408 ")


def test_broken_provider_is_500(loop: asyncio.AbstractEventLoop) -> None:
    def boom() -> NodeStatus:
        raise AttributeError("not started yet")

    srv = MetricsServer(boom, "127.0.0.1", 0)
    on(loop, srv.start())
    try:
        assert get(srv, "/metrics")[0] == 500
        assert get(srv, "/healthz")[0] == 200
    finally:
        on(loop, srv.close())


def test_start_metrics_writes_addr_and_refuses_a_taken_port(
        loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    assert on(loop, start_metrics(None, "127.0.0.1", lambda: STATUS, tmp_path)) is None
    assert not (tmp_path / "metrics.addr").exists()
    srv = on(loop, start_metrics(0, "0.0.0.0", lambda: STATUS, tmp_path))
    try:
        addr = (tmp_path / "metrics.addr").read_text().strip()
        assert addr == f"127.0.0.1:{srv.port}" and srv.port > 0
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
            assert b"seedfl_own_seq 42.0\n" in r.read()
        with pytest.raises(UsageError, match="--metrics-port"):
            on(loop, start_metrics(srv.port, "127.0.0.1", lambda: STATUS, tmp_path / "x"))
    finally:
        on(loop, srv.close())


def test_render_formats_special_values() -> None:
    text = render(replace(BLANK, own_seq=1, applied_total=2, loss_ema=float("inf"),
                          metrics={"odd-key": -0.5}))
    _, samples = parse(text)
    assert samples[("seedfl_loss_ema", ())] == "+Inf"
    assert samples[("seedfl_odd_key", ())] == "-0.5"
    assert ("seedfl_updates_rejected_total", ()) not in samples
    assert text.endswith("\n")
