"""A paho client that reads its socket in large blocks: what the cloud's bridge connects with.

Why: paho reads a packet's fixed header one byte per ``recv()``, its length byte by byte,
then its body, and ``loop_read`` handles one packet per wake-up of its ``select()`` when
nothing is in flight at QoS 1 or 2. For the bridge, whose one socket carries every
node's requests, that was four system calls and a wake-up per message: reading took the
largest share of the cloud's CPU at 10,000 nodes (py-spy: ``_packet_read`` about 40 %).
``BufferedClient`` hands paho's parser slices of one 64 KiB ``recv()`` and keeps reading
packets while any are buffered. The parsing, the protocol and every callback are paho's
own; only where the bytes come from changes. ``WritingClient``, the publishing
connection's, also lets the threads that publish write their packets themselves.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes

from cloud_api.errors import ConfigError
from cloud_api.settings import CloudSettings

READ_SIZE = 64 * 1024
PUBLISH = PacketTypes.PUBLISH << 4  # the command byte's type bits


class _FilterMatcher(MQTTMatcher):
    """paho's matcher of per-filter callbacks, which answers at once when there are none.

    paho asks it for every message received; its ``iter_match`` builds a recursive closure,
    a reference cycle, each time: one cycle per node message left for the garbage collector
    (16,000 cells every 2 s under a stream of updates), which made its collections frequent
    and long in a cloud holding 10,000 nodes. The bridge registers no per-filter callbacks.
    """

    def iter_match(self, topic: str) -> Iterator[Any]:
        root = self._root
        if not root._children and root._content is None:
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-any-return,no-untyped-call]


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a read buffer (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_at = 0
        self._on_message_filtered = _FilterMatcher()  # type: ignore[no-untyped-call]

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_at >= len(self._read_buffer):
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing is there
            if not data:  # the peer closed the connection: paho handles it
                return data
            self._read_buffer, self._read_at = data, 0
        end = min(self._read_at + bufsize, len(self._read_buffer))
        chunk = self._read_buffer[self._read_at : end]
        self._read_at = end
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _easy_log(self, level: LogLevel, fmt: str, *args: Any) -> None:
        # paho logs every packet at debug level: ~3 % of the cloud's CPU under a stream of
        # updates went to the calls down to a logger that drops them; one check instead
        if level == mqtt.MQTT_LOG_DEBUG and self.on_log is None and not (
                self._logger is not None and self._logger.isEnabledFor(logging.DEBUG)):
            return
        super()._easy_log(level, fmt, *args)

    def _sock_close(self) -> None:
        self._read_buffer, self._read_at = b"", 0  # bytes of a dead connection mean nothing
        super()._sock_close()

    def _buffered(self) -> bool:
        return self._sock is not None and self._read_at < len(self._read_buffer)


class WritingClient(BufferedClient):
    """A ``BufferedClient`` whose publishing threads write their packets themselves.

    Why: with paho's network thread (``loop_start``), ``publish`` only queues the packet and
    wakes that thread through a socket pair; the thread then needs the GIL, which the
    bridge worker that published holds while it starts on its next batch. Each reply
    waited for that hand-off, and the publishing connection's thread took 23 % of the
    cloud's sampled CPU under a stream of updates (py-spy), mostly waking up to write.
    Written by the publishing threads, with 10,000 nodes and 10 of them updating
    (``tether bench fleet``, five runs of each alternating), the cloud's CPU per update
    fell from 0.24-0.27 to 0.19-0.23 ms on PostgreSQL (p50 3.01-3.32 -> 2.48-3.03 ms but
    for one run at 3.95, where every process was slower), and in three runs of each on
    SQLite from 0.21-0.24 to 0.17-0.18 ms (p50 2.07-2.34 -> 1.84-2.04 ms).

    Here a thread that queues a packet writes what is queued itself if no one else is
    writing, and wakes the network thread only when bytes are left over (the socket's
    buffer is full) or someone else holds the writing lock. Every write, the network
    thread's too, and every reconnect hold that lock, so packets never interleave and none
    outlives its connection.

    Only PUBLISH packets (the rest, connecting and disconnecting, stay paho's), and plain
    TCP only: a TLS connection is read by the network thread, and OpenSSL must not
    read and write one connection from two threads at once; there paho's own path stays.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writing = threading.RLock()

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> MQTTErrorCode:
        if (command & 0xF0 != PUBLISH or self._ssl or self._transport != "tcp"
                or self._thread is None or threading.current_thread() is self._thread):
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        if self._writing.acquire(blocking=False):
            try:
                rc = super()._packet_write()
            finally:
                self._writing.release()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._out_packet:
                return rc
        self._wake()  # left over, or someone else is writing: the network thread goes on
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> MQTTErrorCode:
        with self._writing:
            return super()._packet_write()

    def reconnect(self) -> MQTTErrorCode:
        with self._writing:
            return super().reconnect()

    def _wake(self) -> None:
        sockpair = self._sockpairW
        if sockpair is not None:
            try:
                sockpair.send(b"0")
            except BlockingIOError:  # full: the thread has plenty to wake it already
                pass


def bridge_client(
    settings: CloudSettings, *, client_id: str, password: str, tls: bool, logger: logging.Logger,
    writing: bool = False,
) -> BufferedClient:
    """A client as both of the bridge's connections want it: MQTT 3.1.1 with a clean
    session and the bridge's credentials, TLS when the URL says so, reconnecting by itself
    (1 s doubling to 30 s), TCP_NODELAY (Nagle's algorithm was measured adding ~20 ms per
    hop), and a bug in a callback kept from ending the network loop."""
    client = (WritingClient if writing else BufferedClient)(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    configure_login(client, settings, password=password, tls=tls)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.suppress_exceptions = True
    client.enable_logger(logger)
    client.on_socket_open = _no_delay
    return client


def configure_login(
    client: mqtt.Client, settings: CloudSettings, *, password: str, tls: bool
) -> None:
    """The bridge's identity on ``client``: its username and password, and over TLS the
    broker's CA (``mqtt_cafile``) and a client certificate (``mqtt_certfile``) if set;
    with ``mqtt_certificate_login``, no username (the broker maps the certificate)."""
    if not (settings.mqtt_certificate_login and settings.mqtt_certfile is not None):
        client.username_pw_set(settings.mqtt_username, password)
    if not tls:
        return
    context = ssl.create_default_context(
        cafile=str(settings.mqtt_cafile) if settings.mqtt_cafile else None)
    if settings.mqtt_certfile is not None and settings.mqtt_keyfile is not None:
        try:
            context.load_cert_chain(str(settings.mqtt_certfile), str(settings.mqtt_keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the bridge's client certificate "
                              f"{settings.mqtt_certfile}: {exc}; check mqtt_certfile and "
                              "mqtt_keyfile") from exc
    client.tls_set_context(context)


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (unix, websockets)
        pass
