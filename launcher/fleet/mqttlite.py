"""A minimal asyncio MQTT 3.1.1 client: one broker connection per simulated node.

It exists only for the fleet simulator (``tether bench fleet``), where ten thousand
connections share one event loop; the edge agent itself keeps paho. A ``Connection`` is
opened with ``open_connection`` (CONNECT sent, CONNACK awaited), then:

- ``subscribe`` sends SUBSCRIBE; its future holds the SUBACK's granted QoS;
- ``publish`` writes a PUBLISH at QoS 0 or 1 and returns at once; PUBACKs only count
  down ``unacked`` (a lost connection drops what was in flight, as the agent's
  ``drop_out_messages`` does: the node decides afresh after reconnecting);
- every message received is acknowledged (QoS 1) and handed to ``on_message``; those a
  persistent session delivers right behind the CONNACK wait until ``start``;
- ``ping`` is sent by the owner's timer when nothing was written for a keepalive;
- ``close`` sends DISCONNECT (the broker then drops the will); ``abort`` does not.

It is an ``asyncio.Protocol`` rather than a pair of streams: bytes go from
``data_received`` straight through ``mqttcodec.Decoder`` to the handler, with no reader
task and no stream buffer per connection. That was measured: with streams, connecting
10,000 nodes cost the simulator 0.65 ms of CPU per node, mostly task wake-ups and one
``send`` per packet. Writes made while handling one event are coalesced into one
``send``, flushed at the end of the loop iteration. When the connection ends, for any
reason, ``on_close`` is called once with the reason. Errors of opening are ``MqttError``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from launcher.fleet.mqttcodec import (
    Connack,
    Connect,
    Decoder,
    Disconnect,
    Packet,
    Pingreq,
    ProtocolError,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Will,
    encode,
)

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
CloseHandler = Callable[[str], None]


class MqttError(Exception):
    """The broker could not be reached, refused the connection, or broke the protocol."""


class Connection(asyncio.Protocol):
    """One MQTT session; create it with ``open_connection``."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._decoder = Decoder()
        self._out = bytearray()
        self._flush_scheduled = False
        self._connack: asyncio.Future[Connack] = self._loop.create_future()
        # a connection lost before its CONNACK fails this future, awaited or not
        self._connack.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._early: list[Packet] | None = []  # packets behind the CONNACK, until start()
        self._on_message: MessageHandler | None = None
        self._on_close: CloseHandler | None = None
        self._next_id = 0
        self._subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._reason = "the broker closed the connection"
        self.unacked = 0  # QoS 1 publishes not acknowledged yet
        self.last_write = self.last_read = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # request/reply traffic: no Nagle delay (as the agent)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        try:
            for packet in self._decoder.feed(data):
                self._dispatch(packet)
        except ProtocolError as exc:
            self.abort(f"ProtocolError: {exc}")
        except Exception as exc:  # a bug in a handler: end this connection, loudly
            log.exception("a message handler failed; closing the connection")
            self.abort(f"handler failed: {exc!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._closed:
            self._reason = f"{type(exc).__name__}: {exc}"
        self._finish(self._reason)
        if not self._lost.done():
            self._lost.set_result(None)

    # -- writing -----------------------------------------------------------------------------
    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        self._out += data
        self.last_write = time.monotonic()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self._closed:
            self._transport.write(bytes(self._out))
        self._out.clear()

    # -- after CONNACK -----------------------------------------------------------------------
    def start(self, on_message: MessageHandler, on_close: CloseHandler) -> None:
        """Start delivering messages (and the end of the connection) to the handlers."""
        self._on_message, self._on_close = on_message, on_close
        early, self._early = self._early or [], None
        for packet in early:
            self._dispatch(packet)
        if self._closed:
            on_close(self._reason)

    def subscribe(self, filters: list[tuple[str, int]]) -> asyncio.Future[tuple[int, ...]]:
        """SUBSCRIBE ``(filter, qos)`` pairs; the future holds the granted QoS of each
        (0x80: refused). Publishing right away is fine: the broker handles packets in order."""
        packet_id = self._packet_id()
        waiter: asyncio.Future[tuple[int, ...]] = self._loop.create_future()
        self._subacks[packet_id] = waiter
        self._write(encode(Subscribe(packet_id, tuple(filters))))
        return waiter

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        packet_id = self._packet_id() if qos else None
        if qos:
            self.unacked += 1
        self._write(encode(Publish(topic, payload, qos, retain, packet_id)))

    def ping(self) -> None:
        self._write(encode(Pingreq()))

    async def close(self) -> None:
        """DISCONNECT, then close the socket: the broker forgets the will."""
        self._write(encode(Disconnect()))
        self._flush()
        self.abort("closed by the client")
        await self._lost

    def abort(self, reason: str) -> None:
        """Close the socket without DISCONNECT (the broker publishes the will)."""
        if self._closed:
            return
        self._reason = reason
        self._finish(reason)
        if self._transport is not None:
            self._transport.close()

    def _finish(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        for waiter in self._subacks.values():
            waiter.cancel()  # nobody may be waiting: a cancelled future is never reported
        if not self._connack.done():
            self._connack.set_exception(ConnectionResetError(reason))
        if self._on_close is not None:
            self._on_close(reason)

    # -- reading -----------------------------------------------------------------------------
    def _dispatch(self, packet: Packet) -> None:
        if isinstance(packet, Publish):
            if packet.qos == 1 and packet.packet_id is not None:
                self._write(encode(Puback(packet.packet_id)))
            if self._early is not None:
                self._early.append(Publish(packet.topic, packet.payload))  # acked already
            elif self._on_message is not None:
                self._on_message(packet.topic, packet.payload)
        elif isinstance(packet, Puback):
            self.unacked = max(0, self.unacked - 1)
        elif isinstance(packet, Suback):
            waiter = self._subacks.pop(packet.packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(packet.return_codes)
        elif isinstance(packet, Connack):
            if self._connack.done():
                raise ProtocolError("a second CONNACK")
            self._connack.set_result(packet)
        # PINGRESP needs nothing: any byte read proves the broker alive.


async def open_connection(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: bytes | None = None,
    will: Will | None = None,
    keepalive: int = 30,
    clean_session: bool = True,
    timeout: float = 10.0,
    sock_factory: Callable[[], socket.socket] | None = None,
) -> Connection:
    """TCP connect, CONNECT, CONNACK; ``MqttError`` if any of it fails or is refused.
    ``sock_factory`` makes the socket (one in a network namespace: ``Namespace.socket``)."""
    connection: Connection | None = None
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(timeout):
            loop = asyncio.get_running_loop()
            if sock_factory is None:
                _, connection = await loop.create_connection(Connection, host, port)
            else:
                sock = sock_factory()
                await loop.sock_connect(sock, (host, port))
                _, connection = await loop.create_connection(Connection, sock=sock)
                sock = None  # the transport owns it
            connection._write(encode(Connect(client_id, keepalive, clean_session, username,
                                              password, will)))
            connack = await connection._connack
    except BaseException as exc:  # cancelled too: never leave the socket open
        if sock is not None:
            sock.close()
        if connection is not None:
            connection.abort("the connection could not be opened")
        if isinstance(exc, OSError | TimeoutError | ProtocolError):
            raise MqttError(f"cannot connect to {host}:{port}: {type(exc).__name__}: {exc}") from exc
        raise
    if connack.return_code != 0:
        connection.abort("refused")
        await connection._lost
        raise MqttError(f"the broker refused the connection (CONNACK code {connack.return_code})")
    return connection
