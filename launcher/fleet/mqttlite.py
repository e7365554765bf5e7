"""A minimal asyncio MQTT 3.1.1 client: one broker connection per simulated node.

It exists only for the fleet simulator (``tether bench fleet``), where ten thousand
connections share one event loop; the edge agent itself keeps paho. A ``Connection`` is
opened with ``open_connection`` (CONNECT sent, CONNACK awaited), then:

- ``subscribe`` sends SUBSCRIBE; its future holds the SUBACK's granted QoS;
- ``publish`` writes a PUBLISH at QoS 0 or 1 and returns at once; PUBACKs only count
  down ``unacked`` (a lost connection drops what was in flight, as the agent's
  ``drop_out_messages`` does: the node decides afresh after reconnecting);
- every message received is acknowledged (QoS 1) and handed to ``on_message``;
- ``ping`` is sent by the owner's timer when nothing was written for a keepalive;
- ``close`` sends DISCONNECT (the broker then drops the will); ``abort`` does not.

A reader task per connection feeds ``mqttcodec.Decoder``; when the stream ends or breaks,
``on_close`` is called once with the reason. Errors of opening are ``MqttError``.
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

READ_CHUNK = 65536
MessageHandler = Callable[[str, bytes], None]
CloseHandler = Callable[[str], None]


class MqttError(Exception):
    """The broker could not be reached, refused the connection, or broke the protocol."""


class Connection:
    """One open MQTT session; create it with ``open_connection``."""

    __slots__ = (
        "_closed",
        "_decoder",
        "_next_id",
        "_on_close",
        "_on_message",
        "_reader",
        "_subacks",
        "_task",
        "_writer",
        "last_write",
        "unacked",
    )

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = Decoder()
        self._on_message: MessageHandler | None = None
        self._on_close: CloseHandler | None = None
        self._next_id = 0
        self._subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.unacked = 0  # QoS 1 publishes not acknowledged yet
        self.last_write = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._closed

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def _write(self, data: bytes) -> None:
        if not self._closed:
            self._writer.write(data)
            self.last_write = time.monotonic()

    # -- after CONNACK -------------------------------------------------------------------
    def start(self, on_message: MessageHandler, on_close: CloseHandler) -> None:
        """Start delivering messages (and the end of the connection) to the handlers."""
        self._on_message, self._on_close = on_message, on_close
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def subscribe(self, filters: list[tuple[str, int]]) -> asyncio.Future[tuple[int, ...]]:
        """SUBSCRIBE ``(filter, qos)`` pairs; the future holds the granted QoS of each
        (0x80: refused). Publishing right away is fine: the broker handles packets in order."""
        packet_id = self._packet_id()
        waiter: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
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
        self.abort("closed by the client")
        try:
            await self._writer.wait_closed()
        except OSError:
            pass  # the broker went first: closed either way

    def abort(self, reason: str) -> None:
        """Close the socket without DISCONNECT (the broker publishes the will)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        for waiter in self._subacks.values():
            waiter.cancel()  # nobody may be waiting: a cancelled future is never reported
        if self._on_close is not None:
            self._on_close(reason)

    # -- the reader task -----------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "the broker closed the connection"
        try:
            while not self._closed:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                for packet in self._decoder.feed(data):
                    self._dispatch(packet)
        except (OSError, ProtocolError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in a handler: end this connection, loudly
            log.exception("a message handler failed; closing the connection")
            reason = f"handler failed: {exc!r}"
        self.abort(reason)

    def _dispatch(self, packet: object) -> None:
        if isinstance(packet, Publish):
            if packet.qos == 1 and packet.packet_id is not None:
                self._write(encode(Puback(packet.packet_id)))
            if self._on_message is not None:
                self._on_message(packet.topic, packet.payload)
        elif isinstance(packet, Puback):
            self.unacked = max(0, self.unacked - 1)
        elif isinstance(packet, Suback):
            waiter = self._subacks.pop(packet.packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(packet.return_codes)
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
) -> Connection:
    """TCP connect, CONNECT, CONNACK; ``MqttError`` if any of it fails or is refused."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=READ_CHUNK)
            sock = writer.get_extra_info("socket")
            if sock is not None:  # request/reply traffic: no Nagle delay (as the agent)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(reader, writer)
            connection._write(encode(Connect(client_id, keepalive, clean_session, username,
                                             password, will)))
            connack = await _read_connack(reader, connection._decoder)
    except BaseException as exc:  # cancelled too: never leave the socket open
        if writer is not None:
            writer.close()
        if isinstance(exc, OSError | TimeoutError | ProtocolError):
            raise MqttError(f"cannot connect to {host}:{port}: {type(exc).__name__}: {exc}") from exc
        raise
    if connack.return_code != 0:
        writer.close()
        await writer.wait_closed()
        raise MqttError(f"the broker refused the connection (CONNACK code {connack.return_code})")
    return connection


async def _read_connack(reader: asyncio.StreamReader, decoder: Decoder) -> Connack:
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise ConnectionResetError("the broker closed the connection before CONNACK")
        packets = decoder.feed(data)
        if packets:
            first = packets[0]
            if not isinstance(first, Connack) or len(packets) > 1:
                raise ProtocolError(f"expected CONNACK first, got {type(first).__name__}")
            return first
