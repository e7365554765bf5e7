"""The MQTT 3.1.1 packets the fleet simulator speaks, as bytes and back. Pure: no sockets.

paho runs a thread (or a socket loop) per client, which is why ``tether bench fleet``
cannot simulate 10,000 nodes with it in one process. The simulator's asyncio client
(``mqttlite``) needs only a small part of MQTT 3.1.1 (OASIS standard, 2014), and that part
is here: CONNECT (username, password, will, keepalive, clean session), CONNACK, PUBLISH at
QoS 0 and 1 with PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT. Each packet is
a frozen dataclass; ``encode`` turns one into bytes, ``Decoder.feed`` turns a byte stream
into packets (whatever a read returned: a part of a packet, or several). Both directions
of every packet are implemented, so the tests can round-trip them and act as a broker.

Not here: QoS 2, UNSUBSCRIBE, MQTT 5 properties. A packet this module does not know is a
``ProtocolError``, the one error of the module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_REMAINING_LENGTH = 268_435_455  # four bytes of variable-length integer

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14


class ProtocolError(ValueError):
    """Bytes that are not an MQTT 3.1.1 packet this codec knows."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keepalive: int = 60
    clean_session: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    return_code: int = 0  # 0 accepted; 1-5 refused (version, id, unavailable, credentials, auth)
    session_present: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    packet_id: int | None = None  # present with QoS 1
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]  # (topic filter, requested QoS)


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    return_codes: tuple[int, ...]  # granted QoS per filter, 0x80 failure


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = Connect | Connack | Publish | Puback | Subscribe | Suback | Pingreq | Pingresp | Disconnect


# -- primitives ----------------------------------------------------------------------------
def encode_remaining_length(length: int) -> bytes:
    """The variable-length integer of the fixed header: 7 bits a byte, low bits first."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ProtocolError(f"remaining length {length} is out of range")
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def decode_remaining_length(data: bytes | bytearray, start: int = 1) -> tuple[int, int] | None:
    """(length, offset just past it) from ``data[start:]``, or None if it is cut short."""
    value, shift = 0, 0
    for index in range(start, min(start + 4, len(data))):
        byte = data[index]
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    if len(data) >= start + 4:
        raise ProtocolError("remaining length longer than four bytes")
    return None


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ProtocolError(f"a string of {len(raw)} bytes does not fit in MQTT")
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


# -- encoding ------------------------------------------------------------------------------
def encode(packet: Packet) -> bytes:
    """The bytes of ``packet`` on the wire."""
    if isinstance(packet, Publish):
        if packet.qos not in (0, 1) or (packet.qos == 1) != (packet.packet_id is not None):
            raise ProtocolError("QoS 0 has no packet id, QoS 1 needs one (QoS 2 is not spoken)")
        flags = (0x08 if packet.dup else 0) | packet.qos << 1 | (0x01 if packet.retain else 0)
        ident = struct.pack("!H", packet.packet_id) if packet.packet_id is not None else b""
        return _packet(PUBLISH << 4 | flags, _string(packet.topic) + ident + packet.payload)
    if isinstance(packet, Puback):
        return _packet(PUBACK << 4, struct.pack("!H", packet.packet_id))
    if isinstance(packet, Connect):
        return _encode_connect(packet)
    if isinstance(packet, Connack):
        return _packet(CONNACK << 4, bytes((int(packet.session_present), packet.return_code)))
    if isinstance(packet, Subscribe):
        body = struct.pack("!H", packet.packet_id)
        body += b"".join(_string(topic) + bytes((qos,)) for topic, qos in packet.filters)
        return _packet(SUBSCRIBE << 4 | 0x02, body)
    if isinstance(packet, Suback):
        return _packet(SUBACK << 4, struct.pack("!H", packet.packet_id) + bytes(packet.return_codes))
    if isinstance(packet, Pingreq):
        return bytes((PINGREQ << 4, 0))
    if isinstance(packet, Pingresp):
        return bytes((PINGRESP << 4, 0))
    return bytes((DISCONNECT << 4, 0))


def _encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = _string(packet.client_id)
    if packet.will is not None:
        will = packet.will
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _binary(will.payload)
    if packet.username is not None:
        flags |= 0x80
        payload += _string(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += _binary(packet.password)
    header = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", packet.keepalive)
    return _packet(CONNECT << 4, header + payload)


# -- decoding ------------------------------------------------------------------------------
class _Body:
    """A cursor over one packet's body; running past its end is a ProtocolError."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise ProtocolError("packet shorter than its fields")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("a string is not UTF-8") from exc

    def rest(self) -> bytes:
        chunk, self.at = self.data[self.at:], len(self.data)
        return chunk


def decode_packet(first: int, body: bytes) -> Packet:
    """One packet from its first byte and its body (what follows the remaining length)."""
    kind, flags, cursor = first >> 4, first & 0x0F, _Body(body)
    if kind == PUBLISH:
        qos = flags >> 1 & 0x03
        if qos > 1:
            raise ProtocolError(f"PUBLISH with QoS {qos} (only 0 and 1 are spoken)")
        topic = cursor.string()
        packet_id = cursor.u16() if qos else None
        return Publish(topic, cursor.rest(), qos, bool(flags & 0x01), packet_id, bool(flags & 0x08))
    if kind == PUBACK:
        return Puback(cursor.u16())
    if kind == CONNACK:
        acknowledge, code = cursor.u8(), cursor.u8()
        return Connack(code, bool(acknowledge & 0x01))
    if kind == SUBACK:
        return Suback(cursor.u16(), tuple(cursor.rest()))
    if kind == SUBSCRIBE:
        packet_id, filters = cursor.u16(), []
        while cursor.at < len(body):
            filters.append((cursor.string(), cursor.u8()))
        return Subscribe(packet_id, tuple(filters))
    if kind == CONNECT:
        return _decode_connect(cursor)
    if kind == PINGREQ and not body:
        return Pingreq()
    if kind == PINGRESP and not body:
        return Pingresp()
    if kind == DISCONNECT and not body:
        return Disconnect()
    raise ProtocolError(f"packet type {kind} with {len(body)} bytes is not spoken here")


def _decode_connect(cursor: _Body) -> Connect:
    if cursor.string() != "MQTT" or cursor.u8() != 4:
        raise ProtocolError("CONNECT is not MQTT 3.1.1")
    flags, keepalive = cursor.u8(), cursor.u16()
    client_id = cursor.string()
    will = None
    if flags & 0x04:
        topic, payload = cursor.string(), cursor.binary()
        will = Will(topic, payload, flags >> 3 & 0x03, bool(flags & 0x20))
    username = cursor.string() if flags & 0x80 else None
    password = cursor.binary() if flags & 0x40 else None
    return Connect(client_id, keepalive, bool(flags & 0x02), username, password, will)


class Decoder:
    """Bytes as they arrive in, whole packets out; keeps what is not a whole packet yet."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        start = 0
        while len(buffer) - start >= 2:
            header = decode_remaining_length(buffer, start + 1)
            if header is None:
                break
            length, offset = header
            end = offset + length
            if end > len(buffer):
                break
            packets.append(decode_packet(buffer[start], bytes(buffer[offset:end])))
            start = end
        if start:
            del buffer[:start]
        return packets

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole packet yet."""
        return len(self._buffer)
