"""``ss -tin`` parsing and the window arithmetic of the kernel byte counter."""

from __future__ import annotations

import socket
import time

from seedfl.bench.tcpbytes import carried, parse, snapshot

SAMPLE = """\
0      0          127.0.0.1:40000 127.0.0.1:7440
\t cubic rtt:0.05/0.02 cwnd:10 bytes_sent:1500 bytes_acked:1501 bytes_received:900 segs_out:9
0      0          127.0.0.1:7440 127.0.0.1:40000
\t cubic wscale:7,7 rto:204 bytes_sent:900 bytes_acked:901 bytes_received:1500
"""


def test_parse_reads_both_ends_and_their_counters() -> None:
    got = parse(SAMPLE)
    assert got[("127.0.0.1:40000", "127.0.0.1:7440")] == {"bytes_acked": 1501,
                                                          "bytes_received": 900}
    assert got[("127.0.0.1:7440", "127.0.0.1:40000")]["bytes_acked"] == 901


def test_carried_counts_only_sockets_alive_in_both_snapshots() -> None:
    before = parse(SAMPLE)
    after = {k: {"bytes_acked": v["bytes_acked"] + 100, "bytes_received": 0}
             for k, v in before.items()}
    after[("127.0.0.1:50000", "127.0.0.1:7440")] = {"bytes_acked": 10**6, "bytes_received": 0}
    assert carried(before, after) == {"tcp_payload_bytes": 200, "connections": 1}


def test_snapshot_sees_bytes_written_on_a_real_loopback_connection() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    peer, _ = server.accept()
    try:
        before = snapshot([port])
        client.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += peer.recv(4096)
        peer.sendall(b"y" * 10)
        assert client.recv(16)
        deadline = time.monotonic() + 5
        while True:  # acks are asynchronous: poll with a deadline until both count
            after = snapshot([port])
            if carried(before, after)["tcp_payload_bytes"] >= 1010 or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert carried(before, after) == {"tcp_payload_bytes": 1010, "connections": 1}
    finally:
        for s in (client, peer, server):
            s.close()
