"""Log streams over MQTT: the request the cloud sends, the chunks a node answers, the bounds.

Why it is here: both sides build and check these messages, and the bounds are part of the
contract (a node enforces them, the cloud relies on them), so they live in one pure place.

Request, cloud -> node on ``{root}/{ns}/{node}/logs/request``::

    {"streamId": "<1-64 printable ASCII>", "op": "open", "app": "web", "service"?: "api",
     "tail": 100, "follow": false, "lease": 15}
    {"streamId": "...", "op": "renew"}     (a follower's heartbeat: keep the stream open)
    {"streamId": "...", "op": "close"}     (the follower went away)

Chunk, node -> cloud on ``{root}/{ns}/{node}/logs/data``::

    {"streamId": "...", "seq": 0, "lines": ["..."], "truncated"?: true, "done"?: true,
     "error"?: {"code": 404, "message": "..."}}

A stream without ``follow`` ends with a chunk that says ``done``. A followed stream ends when
its lease runs out (``lease`` seconds after the last open or renew), on ``close``, or when
the node stops; its last chunk says ``done`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import ErrorCode, Rejection
from schemas.names import validate_name

# -- the bounds (a node enforces every one of them) ----------------------------------------
DEFAULT_TAIL = 100
MAX_TAIL_LINES = 10_000  # lines a request may ask for, per instance
MAX_LINE_BYTES = 8 * 1024  # a longer line is cut and ends with TRUNCATED_MARK
MAX_CHUNK_BYTES = 64 * 1024  # line text per chunk message
MAX_CHUNKS_PER_SECOND = 10  # per stream: at most 640 KiB/s of log text per stream
MAX_TAIL_BYTES = 1024 * 1024  # the tail of one request; older lines are dropped ("truncated")
MAX_STREAMS = 8  # open streams per node; one more is refused with 429
DEFAULT_LEASE_SECONDS = 15.0  # a follower renews every RENEW_SECONDS
MAX_LEASE_SECONDS = 60.0
RENEW_SECONDS = 5.0
MAX_STREAM_ID = 64
MAX_MESSAGE_BYTES = 2 * MAX_CHUNK_BYTES  # JSON escaping may grow the text
TRUNCATED_MARK = " [line truncated]"

OPS = ("open", "renew", "close")


@dataclass(frozen=True)
class LogRequest:
    stream_id: str
    op: str
    app: str = ""
    service: str | None = None
    tail: int = DEFAULT_TAIL
    follow: bool = False
    lease: float = DEFAULT_LEASE_SECONDS

    def wire(self) -> dict[str, Any]:
        if self.op != "open":
            return {"streamId": self.stream_id, "op": self.op}
        body: dict[str, Any] = {"streamId": self.stream_id, "op": "open", "app": self.app,
                                "tail": self.tail, "follow": self.follow, "lease": self.lease}
        if self.service:
            body["service"] = self.service
        return body


def check_stream_id(value: Any) -> str:
    if (not isinstance(value, str) or not value or len(value) > MAX_STREAM_ID
            or not value.isascii() or not value.isprintable()):
        raise Rejection(ErrorCode.BAD_REQUEST,
                        f"streamId must be 1-{MAX_STREAM_ID} printable ASCII characters")
    return value


def check_tail(value: Any) -> int:
    """A tail line count, 0 to ``MAX_TAIL_LINES``; 400 otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TAIL_LINES:
        raise Rejection(ErrorCode.BAD_REQUEST,
                        f"tail must be an integer from 0 to {MAX_TAIL_LINES} (lines)")
    return value


def parse_request(body: Any) -> LogRequest:
    """A ``logs/request`` message; ``Rejection`` (400) when it is not the contract's shape."""
    if not isinstance(body, dict):
        raise Rejection(ErrorCode.BAD_REQUEST, 'a log request is {"streamId", "op", ...}')
    stream_id = check_stream_id(body.get("streamId"))
    op = body.get("op")
    if op not in OPS:
        raise Rejection(ErrorCode.BAD_REQUEST, f"op must be one of {', '.join(OPS)}")
    if op != "open":
        return LogRequest(stream_id, op)
    app = validate_name(body.get("app"), kind="app name")
    service = body.get("service")
    if service is not None:
        service = validate_name(service, kind="service name")
    follow = body.get("follow", False)
    if not isinstance(follow, bool):
        raise Rejection(ErrorCode.BAD_REQUEST, "follow must be true or false")
    lease = body.get("lease", DEFAULT_LEASE_SECONDS)
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease:
        raise Rejection(ErrorCode.BAD_REQUEST, "lease must be a positive number of seconds")
    return LogRequest(stream_id, "open", app, service, check_tail(body.get("tail", DEFAULT_TAIL)),
                      follow, min(float(lease), MAX_LEASE_SECONDS))


@dataclass(frozen=True)
class LogChunk:
    stream_id: str
    seq: int
    lines: tuple[str, ...] = ()
    truncated: bool = False
    done: bool = False
    error: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"streamId": self.stream_id, "seq": self.seq, "lines": list(self.lines)}
        if self.truncated:
            body["truncated"] = True
        if self.done:
            body["done"] = True
        if self.error is not None:
            body["error"] = self.error
        return body


def parse_chunk(body: Any) -> LogChunk | None:
    """A ``logs/data`` message, or None when it is not the contract's shape."""
    if not isinstance(body, dict):
        return None
    try:
        stream_id = check_stream_id(body.get("streamId"))
    except Rejection:
        return None
    seq, lines = body.get("seq"), body.get("lines", [])
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(lines, list):
        return None
    if not all(isinstance(line, str) for line in lines):
        return None
    error = body.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            error = {"code": 502, "message": "the node sent a malformed error"}
        else:
            error = {"code": code, "message": str(error.get("message", ""))}
    return LogChunk(stream_id, seq, tuple(lines), body.get("truncated") is True,
                    body.get("done") is True, error)


def cut_line(line: str) -> str:
    """``line`` within ``MAX_LINE_BYTES`` (UTF-8), marked when cut."""
    data = line.encode("utf-8", "replace")
    if len(data) <= MAX_LINE_BYTES:
        return line
    keep = MAX_LINE_BYTES - len(TRUNCATED_MARK)
    return data[:keep].decode("utf-8", "ignore") + TRUNCATED_MARK


def chunked(lines: list[str], *, max_bytes: int = MAX_CHUNK_BYTES) -> list[list[str]]:
    """``lines`` split into runs of at most ``max_bytes`` of text each (a line never split)."""
    runs: list[list[str]] = []
    current: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode("utf-8", "replace")) + 1
        if current and size + length > max_bytes:
            runs.append(current)
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        runs.append(current)
    return runs


def tail_within(lines: list[str], *, max_bytes: int = MAX_TAIL_BYTES) -> tuple[list[str], bool]:
    """The newest of ``lines`` that fit in ``max_bytes``; True when older ones were dropped."""
    size, start = 0, len(lines)
    while start > 0:
        length = len(lines[start - 1].encode("utf-8", "replace")) + 1
        if size + length > max_bytes:
            return lines[start:], True
        size += length
        start -= 1
    return lines, False
