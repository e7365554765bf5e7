"""``LogServer``: answers the cloud's ``logs/request`` messages with chunks on ``logs/data``.

Why it exists: an operator reads an app's output through the cloud (``tether logs``) over
the MQTT connection the node already has, with no port opened on the node (DESIGN §11).

Each open stream is one thread (at most ``MAX_STREAMS``, 8; one more is answered 429).
It reads the tail of every instance's log (``LogSource``), at most ``tail`` lines each
(prefixed ``[instance]`` when there are several), keeps the newest ``MAX_TAIL_BYTES`` (1 MiB,
``truncated`` when older lines were dropped) and publishes them in chunks of at most
``MAX_CHUNK_BYTES`` (64 KiB) of text, at most ``MAX_CHUNKS_PER_SECOND`` (10) chunks a
second. Without ``follow`` the last chunk of the tail says ``done``. With it, the stream polls its
sources every ``poll_seconds`` and sends what is new, until its lease runs out (the cloud
renews it while its client listens; ``lease`` seconds, at most 60), the cloud closes it,
or the server closes: then a last ``done`` chunk, and the thread ends. No reader
outlives its stream.

``submit`` runs on the MQTT network thread: it only parses and hands over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import BackendError
from edge_runtime.logs.sources import LogSource
from schemas.errors import ErrorCode, Rejection
from schemas.logs import (
    MAX_CHUNKS_PER_SECOND,
    MAX_STREAMS,
    LogChunk,
    LogRequest,
    chunked,
    parse_request,
    tail_within,
)
from schemas.payloads import decode_json, encode_json
from schemas.topics import Suffix, TopicScheme

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
MAX_REQUEST_BYTES = 4096
Finder = Callable[[str, str | None], list[LogSource]]  # (app, service) -> sources
Publish = Callable[[str, bytes], None]


@dataclass
class _Stream:
    request: LogRequest
    lease_until: float
    stop: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    sent: deque[float] = field(default_factory=deque)  # when the last chunks went out


class LogServer:
    """This node's log streams. Thread-safe; ``close`` ends them all."""

    def __init__(
        self,
        find: Finder,
        *,
        publish: Publish,
        topics: TopicScheme,
        namespace: str,
        node: str,
        max_streams: int = MAX_STREAMS,
        chunks_per_second: int = MAX_CHUNKS_PER_SECOND,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find, self._publish, self._clock = find, publish, clock
        self._data_topic = topics.topic(namespace, node, Suffix.LOGS_DATA)
        self._request_topic = topics.topic(namespace, node, Suffix.LOGS_REQUEST)
        self.max_streams, self.chunks_per_second = max_streams, chunks_per_second
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def submit(self, topic: str, payload: bytes) -> None:
        """A ``logs/request`` message: open, renew or close a stream. Never raises."""
        if topic != self._request_topic:
            return
        try:
            request = parse_request(decode_json(payload, max_bytes=MAX_REQUEST_BYTES))
        except Rejection as exc:
            log.info("ignoring a malformed log request: %s", exc.message)
            return
        if request.op == "open":
            self._open(request)
            return
        with self._lock:
            stream = self._streams.get(request.stream_id)
            if stream is not None and request.op == "renew":
                stream.lease_until = max(stream.lease_until, self._clock() + stream.request.lease)
            elif stream is not None:
                stream.stop.set()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            streams, threads = list(self._streams.values()), list(self._threads.values())
        for stream in streams:
            stream.stop.set()
        for thread in threads:
            thread.join(timeout)

    # -- one stream ----------------------------------------------------------------------
    def _open(self, request: LogRequest) -> None:
        with self._lock:
            if request.stream_id in self._streams:
                return  # a duplicate delivery (QoS 1)
            refused = self._closed or len(self._streams) >= self.max_streams
            if not refused:
                stream = _Stream(request, self._clock() + request.lease)
                thread = threading.Thread(target=self._serve, args=(stream,), daemon=True,
                                          name=f"tether-logs-{request.stream_id[:16]}")
                self._streams[request.stream_id] = stream
                self._threads[request.stream_id] = thread
        if refused:
            error = {"code": int(ErrorCode.TOO_MANY_REQUESTS), "message":
                     f"this node serves {self.max_streams} log streams at most; retry shortly"}
            self._send_raw(LogChunk(request.stream_id, 0, done=True, error=error))
            return
        thread.start()

    def _serve(self, stream: _Stream) -> None:
        request = stream.request
        try:
            sources = self._find(request.app, request.service)
            lines = self._tails(sources, request.tail)
            lines, truncated = tail_within(lines)
            self._send_lines(stream, lines, truncated=truncated, done=not request.follow)
            if request.follow:
                self._follow(stream, sources)
                self._send(stream, LogChunk(request.stream_id, stream.seq, done=True))
        except LookupError as exc:
            error = {"code": int(ErrorCode.NOT_FOUND), "message": str(exc.args[0])}
            self._send(stream, LogChunk(request.stream_id, stream.seq, done=True, error=error))
        except (BackendError, OSError) as exc:
            error = {"code": 502, "message": f"cannot read the log of {request.app}: {exc}"}
            self._send(stream, LogChunk(request.stream_id, stream.seq, done=True, error=error))
        except Exception:
            log.exception("log stream %s failed", request.stream_id)
            error = {"code": 500, "message": "internal error of the node's log server"}
            self._send(stream, LogChunk(request.stream_id, stream.seq, done=True, error=error))
        finally:
            with self._lock:
                self._streams.pop(request.stream_id, None)
                self._threads.pop(request.stream_id, None)

    @staticmethod
    def _tails(sources: list[LogSource], tail: int) -> list[str]:
        lines: list[str] = []
        for source in sources:
            found = source.tail(tail)
            lines += [f"[{source.name}] {line}" for line in found] if len(sources) > 1 else found
        return lines

    def _follow(self, stream: _Stream, sources: list[LogSource]) -> None:
        while not stream.stop.wait(self.poll_seconds):
            if self._clock() >= stream.lease_until:
                log.debug("log stream %s: lease ran out", stream.request.stream_id)
                return
            lines: list[str] = []
            skipped = False
            for source in sources:
                found, lost = source.poll()
                skipped |= lost
                lines += [f"[{source.name}] {line}" for line in found] if len(sources) > 1 else found
            if lines or skipped:
                lines, cut = tail_within(lines)
                self._send_lines(stream, lines, truncated=skipped or cut)

    def _send_lines(
        self, stream: _Stream, lines: list[str], *, truncated: bool, done: bool = False
    ) -> None:
        """``lines`` in chunks; the last one says ``truncated`` and ``done`` if told so."""
        runs = chunked(lines) or [[]]
        for index, run in enumerate(runs):
            if stream.stop.is_set() and stream.request.follow:
                return
            last = index == len(runs) - 1
            self._send(stream, LogChunk(stream.request.stream_id, stream.seq, tuple(run),
                                        truncated=truncated and last, done=done and last))

    def _send(self, stream: _Stream, chunk: LogChunk) -> None:
        """Publish one chunk, waiting first if the stream sent its chunks of this second."""
        now = self._clock()
        while stream.sent and now - stream.sent[0] >= 1.0:
            stream.sent.popleft()
        if len(stream.sent) >= self.chunks_per_second:
            wait = 1.0 - (now - stream.sent[0])
            if not chunk.done:
                stream.stop.wait(wait)
            else:
                time.sleep(max(0.0, wait))
            stream.sent.popleft()
        stream.sent.append(self._clock())
        stream.seq = chunk.seq + 1
        self._send_raw(chunk)

    def _send_raw(self, chunk: LogChunk) -> None:
        body: dict[str, Any] = chunk.wire()
        try:
            self._publish(self._data_topic, encode_json(body))
        except Exception:
            log.exception("could not publish a log chunk of stream %s", chunk.stream_id)
