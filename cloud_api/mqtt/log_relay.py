"""Relaying log streams from nodes to REST, and handing the nodes' events to the writer.

Why it exists: ``GET .../nodes/{node}/logs`` reads an app's output on the node over the
MQTT connection the node already has (DESIGN §11): the cloud publishes a request on the
node's ``logs/request`` topic (``schemas.logs``), the node answers with chunks on its
``logs/data`` topic, and ``LogRelay`` hands each chunk to the request waiting for it. A
chunk is accepted only from the topic of the node the stream was opened on, so one node
cannot answer for another; the broker's ACL keeps each node to its own topics anyway.

A follower renews its stream every ``RENEW_SECONDS`` (5 s) while its client listens
(``renew``), and closes it when the client goes (``close``); a node ends a stream whose
lease (15 s) ran out, so a cloud that dies leaves no reader behind on the node. At most
``max_streams`` (1,000) streams are open on one cloud process (more: 429), and a stream
whose reader is slower than its node keeps at most ``MAX_QUEUED_CHUNKS`` (256) chunks,
dropping later ones (the last delivered chunk then says ``truncated``).

``route_node_output`` is the bridge's handler in front of the shadow server: log chunks go
to the relay, ``events`` messages to the event writer (parsed here, stored in batches by
``cloud_api.store.event_writing``), everything else on to the shadow server, untouched.
Log chunks are subscribed without a share group (every replica sees them and keeps those
it waits for); events with the group (one replica stores each).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cloud_api.errors import Busy
from cloud_api.mqtt.transport import Publisher
from schemas.errors import Rejection
from schemas.events import MAX_EVENTS_BYTES, AppEvent, parse_events
from schemas.logs import MAX_MESSAGE_BYTES, LogChunk, LogRequest, parse_chunk
from schemas.payloads import decode_json, encode_json
from schemas.topics import Suffix, TopicScheme

log = logging.getLogger(__name__)
Handler = Callable[[Sequence[tuple[str, bytes]]], None]  # a bridge batch
MAX_STREAMS = 1000
MAX_QUEUED_CHUNKS = 256


def node_output_filters(topics: TopicScheme, *, share_group: str | None = None) -> list[str]:
    """The bridge's subscriptions to every node's log chunks (unshared) and events."""
    events = f"{topics.root}/+/+/{Suffix.EVENTS.value}"
    if share_group:
        events = f"$share/{share_group}/{events}"
    return [f"{topics.root}/+/+/{Suffix.LOGS_DATA.value}", events]


class EventSink(Protocol):
    def submit(self, namespace: str, node: str, events: Sequence[AppEvent]) -> None: ...


@dataclass
class LogStream:
    """One open stream: where its chunks come from and where they go."""

    stream_id: str
    namespace: str
    node: str
    data_topic: str
    request_topic: str
    loop: asyncio.AbstractEventLoop
    chunks: asyncio.Queue[LogChunk] = field(default_factory=asyncio.Queue)
    dropped: int = 0


class LogRelay:
    """Open log streams, keyed by streamId. Thread-safe."""

    def __init__(self, *, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._streams: dict[str, LogStream] = {}

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def open(
        self, publisher: Publisher, *, topics: TopicScheme, namespace: str, node: str,
        app: str, service: str | None, tail: int, follow: bool, lease: float,
    ) -> LogStream:
        """Publish the request; chunks arrive on the stream's queue (in the running loop)."""
        stream = LogStream(
            uuid.uuid4().hex, namespace, node,
            topics.topic(namespace, node, Suffix.LOGS_DATA),
            topics.topic(namespace, node, Suffix.LOGS_REQUEST),
            asyncio.get_running_loop(),
        )
        with self._lock:
            if len(self._streams) >= self.max_streams:
                raise Busy("too many log streams open; retry shortly")
            self._streams[stream.stream_id] = stream
        request = LogRequest(stream.stream_id, "open", app, service, tail, follow, lease)
        try:
            publisher.publish(stream.request_topic, encode_json(request.wire()))
        except BaseException:
            self.forget(stream)
            raise
        return stream

    def renew(self, publisher: Publisher, stream: LogStream) -> None:
        request = LogRequest(stream.stream_id, "renew")
        publisher.publish(stream.request_topic, encode_json(request.wire()), qos=0)

    def close(self, publisher: Publisher, stream: LogStream) -> None:
        """Forget the stream and tell the node to stop it (best effort)."""
        self.forget(stream)
        try:
            request = LogRequest(stream.stream_id, "close")
            publisher.publish(stream.request_topic, encode_json(request.wire()), qos=0)
        except Exception:  # the lease ends it on the node anyway
            log.debug("could not close log stream %s", stream.stream_id, exc_info=True)

    def forget(self, stream: LogStream) -> None:
        with self._lock:
            self._streams.pop(stream.stream_id, None)

    def resolve(self, topic: str, payload: bytes) -> None:
        """Hand a ``logs/data`` message to the stream waiting for it. Never raises."""
        try:
            chunk = parse_chunk(decode_json(payload, max_bytes=MAX_MESSAGE_BYTES))
        except Rejection:
            chunk = None
        if chunk is None:
            log.info("ignoring a malformed log chunk on %s", topic)
            return
        with self._lock:
            stream = self._streams.get(chunk.stream_id)
        if stream is None or stream.data_topic != topic:
            return  # late, for another replica, or from a node it was not sent to
        try:
            stream.loop.call_soon_threadsafe(_deliver, stream, chunk)
        except RuntimeError:  # the request's loop is gone
            self.forget(stream)


def _deliver(stream: LogStream, chunk: LogChunk) -> None:
    """In the request's loop: queue the chunk, unless the reader is too far behind."""
    if stream.chunks.qsize() >= MAX_QUEUED_CHUNKS and not chunk.done:
        stream.dropped += 1
        return
    stream.chunks.put_nowait(chunk)


def route_node_output(
    relay: LogRelay, events: EventSink | None, topics: TopicScheme, handle: Handler
) -> Handler:
    """The bridge's handler: log chunks to ``relay``, events to ``events``, the rest on."""

    def dispatch(batch: Sequence[tuple[str, bytes]]) -> None:
        rest = []
        for topic, payload in batch:
            parsed = topics.parse(topic)
            if parsed is not None and parsed.suffix == Suffix.LOGS_DATA:
                relay.resolve(topic, payload)
            elif parsed is not None and parsed.suffix == Suffix.EVENTS:
                if events is not None:
                    _hand_events(events, parsed.namespace, parsed.node, payload)
            else:
                rest.append((topic, payload))
        if rest:
            handle(rest)

    return dispatch


def _hand_events(events: EventSink, namespace: str, node: str, payload: bytes) -> None:
    try:
        found = parse_events(decode_json(payload, max_bytes=MAX_EVENTS_BYTES))
    except Rejection as exc:
        log.info("ignoring a malformed events message of %s/%s: %s", namespace, node, exc.message)
        return
    if found:
        events.submit(namespace, node, found)
