"""A paho client that reads its socket in large blocks: what the cloud's bridge connects with.

Why: paho reads a packet's fixed header one byte per ``recv()``, its length byte by byte,
then its body, and ``loop_read`` handles one packet per wake-up of its ``select()`` when
nothing is in flight at QoS 1 or 2. For the bridge, whose one socket carries every
node's requests, that was four system calls and a wake-up per message: reading took the
largest share of the cloud's CPU at 10,000 nodes (py-spy: ``_packet_read`` about 40 %).
``BufferedClient`` hands paho's parser slices of one 64 KiB ``recv()`` and keeps reading
packets while any are buffered. The parsing, the protocol and every callback are paho's
own; only where the bytes come from changes.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_SIZE = 64 * 1024


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a read buffer (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_at = 0

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

    def _sock_close(self) -> None:
        self._read_buffer, self._read_at = b"", 0  # bytes of a dead connection mean nothing
        super()._sock_close()

    def _buffered(self) -> bool:
        return self._sock is not None and self._read_at < len(self._read_buffer)
