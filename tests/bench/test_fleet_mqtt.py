"""The fleet simulator's MQTT 3.1.1 codec (bytes as the standard gives them) and its
asyncio client against a scripted broker on port 0."""

from __future__ import annotations

import asyncio

import pytest

from launcher.fleet.mqttcodec import (
    MAX_REMAINING_LENGTH,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Will,
    decode_remaining_length,
    encode,
    encode_remaining_length,
)
from launcher.fleet.mqttlite import MqttError, open_connection


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"),
        (2_097_151, "ffff7f"), (2_097_152, "80808001"), (MAX_REMAINING_LENGTH, "ffffff7f"),
    ],
)
def test_remaining_length_boundaries(length: int, encoded: str) -> None:
    assert encode_remaining_length(length).hex() == encoded
    assert decode_remaining_length(b"\x30" + bytes.fromhex(encoded)) == (length, 1 + len(encoded) // 2)


def test_remaining_length_out_of_range_or_cut_short() -> None:
    with pytest.raises(ProtocolError):
        encode_remaining_length(MAX_REMAINING_LENGTH + 1)
    with pytest.raises(ProtocolError):
        encode_remaining_length(-1)
    assert decode_remaining_length(b"\x30\x80\x80") is None  # more bytes to come
    with pytest.raises(ProtocolError):
        decode_remaining_length(b"\x30\x80\x80\x80\x80\x01")  # a fifth byte


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Connect("a", keepalive=60), "100d00044d5154540402003c000161"),
        (Connack(0), "20020000"),
        (Connack(5, session_present=True), "20020105"),
        (Publish("a/b", b"hi"), "3007000361 2f62 6869"),
        (Publish("a/b", b"hi", qos=1, retain=True, packet_id=10), "3309000361 2f62 000a 6869"),
        (Puback(1), "40020001"),
        (Subscribe(10, (("a/b", 1),)), "8208000a00036 12f6201"),
        (Suback(10, (1, 0x80)), "9004000a0180"),
        (Pingreq(), "c000"),
        (Pingresp(), "d000"),
        (Disconnect(), "e000"),
    ],
)
def test_packets_are_the_bytes_of_the_standard(packet: Packet, wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert encode(packet) == raw
    assert Decoder().feed(raw) == [packet]


def test_connect_with_everything_round_trips() -> None:
    packet = Connect("tether-edge.ns.n1", keepalive=30, clean_session=False, username="ns/n1",
                     password=b"secret", will=Will("t/ns/n1/status", b'{"online":false}', 1, True))
    raw = encode(packet)
    assert raw[9] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain, QoS 1, will
    assert Decoder().feed(raw) == [packet]


def test_decoder_takes_packets_split_and_joined_anyhow() -> None:
    packets: list[Packet] = [Publish("x" * 200, b"y" * 300, qos=1, packet_id=7), Puback(7),
                             Pingresp(), Publish("t", b"")]
    stream = b"".join(encode(p) for p in packets)
    decoder, seen = Decoder(), []
    for index in range(len(stream)):  # one byte at a time
        seen += decoder.feed(stream[index:index + 1])
    assert seen == packets and decoder.pending == 0
    assert Decoder().feed(stream) == packets  # all at once


@pytest.mark.parametrize(
    "raw",
    ["3400", "f000", "c00100", "32050003612f62", "100c00044d51545403020000000161"],
    ids=["qos2", "unknown-type", "pingreq-with-body", "publish-cut-short", "mqtt-3.1"],
)
def test_what_is_not_spoken_is_a_protocol_error(raw: str) -> None:
    with pytest.raises(ProtocolError):
        Decoder().feed(bytes.fromhex(raw))


def test_publish_needs_a_packet_id_exactly_at_qos_1() -> None:
    with pytest.raises(ProtocolError):
        encode(Publish("t", b"", qos=1))
    with pytest.raises(ProtocolError):
        encode(Publish("t", b"", qos=0, packet_id=1))


# -- the client, against a scripted broker ----------------------------------------------------
class ScriptedBroker:
    """Accepts one client, answers CONNECT/SUBSCRIBE/PINGREQ, echoes QoS 1 publishes back."""

    def __init__(self, *, refuse: int = 0) -> None:
        self.refuse = refuse
        self.received: list[Packet] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            await writer.wait_closed()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        decoder = Decoder()
        while data := await reader.read(4096):
            for packet in decoder.feed(data):
                self.received.append(packet)
                if isinstance(packet, Connect):
                    writer.write(encode(Connack(self.refuse)))
                elif isinstance(packet, Subscribe):
                    writer.write(encode(Suback(packet.packet_id, tuple(q for _, q in packet.filters))))
                elif isinstance(packet, Pingreq):
                    writer.write(encode(Pingresp()))
                elif isinstance(packet, Publish) and packet.qos == 1:
                    assert packet.packet_id is not None
                    writer.write(encode(Puback(packet.packet_id)))
                    writer.write(encode(Publish(packet.topic, packet.payload, 1, packet_id=99)))
                elif isinstance(packet, Disconnect):
                    writer.close()
                    return
        writer.close()


def test_client_session_end_to_end() -> None:
    asyncio.run(_client_session_end_to_end())


async def _client_session_end_to_end() -> None:
    broker = ScriptedBroker()
    async with broker as port:
        connection = await open_connection("127.0.0.1", port, client_id="c1", username="ns/n1",
                                           will=Will("t/status", b"off", 1, True), keepalive=5)
        messages: list[tuple[str, bytes]] = []
        closed: list[str] = []
        connection.start(lambda topic, payload: messages.append((topic, payload)), closed.append)
        assert await connection.subscribe([("t/#", 1), ("u", 0)]) == (1, 0)
        connection.publish("t/a", b"one")
        connection.ping()
        for _ in range(100):
            if messages and connection.unacked == 0:
                break
            await asyncio.sleep(0.01)
        assert messages == [("t/a", b"one")] and connection.unacked == 0
        await connection.close()
        assert closed == ["closed by the client"]
        for _ in range(100):
            if isinstance(broker.received[-1], Disconnect):
                break
            await asyncio.sleep(0.01)
    kinds = [type(p).__name__ for p in broker.received]
    assert kinds == ["Connect", "Subscribe", "Publish", "Pingreq", "Puback", "Disconnect"]
    assert broker.received[-2] == Puback(99)  # the client acknowledged the QoS 1 message


def test_a_refused_connection_is_an_error() -> None:
    async def refused() -> None:
        async with ScriptedBroker(refuse=5) as port:
            await open_connection("127.0.0.1", port, client_id="c1")

    with pytest.raises(MqttError, match="code 5"):
        asyncio.run(refused())


def test_nothing_listening_is_an_error() -> None:
    async def nobody() -> None:
        async with ScriptedBroker() as port:
            pass  # closed again: the port is (very likely) free now
        await open_connection("127.0.0.1", port, client_id="c1", timeout=2)

    with pytest.raises(MqttError, match="cannot connect"):
        asyncio.run(nobody())
