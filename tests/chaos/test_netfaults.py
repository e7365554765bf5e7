"""The fault library itself: each fault does to a real TCP connection what it claims, and
nothing is left behind. An echo server on loopback, reached from a namespace through the
relay, is the connection."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from launcher.chaos.netns import Namespace, wait_gone
from launcher.chaos.relay import DelayRelay


@pytest.fixture
def echo(net_admin: None) -> Iterator[tuple[str, int]]:
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
    server.close()
    thread.join(5)
    for conn in conns:
        conn.close()


def connected(ns: Namespace, relay: DelayRelay, timeout: float = 2.0) -> socket.socket:
    sock = ns.socket()
    sock.setblocking(True)
    sock.settimeout(timeout)
    try:
        sock.connect((ns.host_address, relay.port))
    except OSError:
        sock.close()
        raise
    return sock


def round_trip(sock: socket.socket, data: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        got += sock.recv(65536)
    return time.monotonic() - started


def test_faults_do_what_they_say_and_heal(echo: tuple[str, int]) -> None:
    with Namespace() as ns, DelayRelay(ns.host_address, echo) as relay:
        assert ns.address != ns.host_address and ns.address.startswith("10.213.")
        sock = connected(ns, relay)
        try:
            faults(ns, relay, sock)
        finally:
            sock.close()
        inside = ns.popen(["sleep", "600"])
        name = ns.name
    assert inside.poll() is not None, "close() kills what runs inside"
    assert wait_gone(name)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert ns.host_link not in links


def faults(ns: Namespace, relay: DelayRelay, sock: socket.socket) -> None:
    assert round_trip(sock) < 0.5

    ns.blackhole()  # half-open: the socket stays open, nothing flows
    sock.sendall(b"lost?")
    with pytest.raises(TimeoutError):
        sock.recv(10)
    with pytest.raises(OSError):
        connected(ns, relay, timeout=1.0).close()
    ns.heal()
    sock.settimeout(5)
    assert sock.recv(10) == b"lost?"  # TCP retransmitted it once the hole closed

    ns.cut()
    sock.settimeout(1.0)
    sock.sendall(b"cut")
    with pytest.raises(TimeoutError):
        sock.recv(10)
    ns.heal()
    sock.settimeout(5)
    assert sock.recv(10) == b"cut"

    relay.set_delay(0.1, 0.02)  # each way: 80..120 ms
    assert 0.16 <= round_trip(sock) <= 0.5
    relay.set_delay(0)

    ns.slow(512)  # 64 kB each way at 512 kbit/s: 1 s each way, pipelined
    assert round_trip(sock, b"x" * 64_000) >= 0.9
    ns.heal()
    assert round_trip(sock, b"x" * 64_000) < 0.3

    ns.loss(100)  # numgen random mod 1000 < 1000: every packet
    with pytest.raises(OSError):
        connected(ns, relay, timeout=1.0).close()
    ns.loss(0)
    connected(ns, relay).close()
