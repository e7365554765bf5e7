"""The node's log server: tails of native log files, chunks within their bounds, a rate
limit per stream, at most so many streams, and followers that end with their lease."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.logs.serving import LogServer
from edge_runtime.logs.sources import FileSource, LogSource
from schemas.logs import MAX_CHUNK_BYTES, MAX_LINE_BYTES, MAX_TAIL_BYTES, TRUNCATED_MARK
from schemas.topics import Suffix, TopicScheme

T = TopicScheme()
REQUEST = T.topic("default", "n1", Suffix.LOGS_REQUEST)
DATA = T.topic("default", "n1", Suffix.LOGS_DATA)


# -- FileSource ---------------------------------------------------------------------------
def test_tail_then_poll(tmp_path: Path) -> None:
    path = tmp_path / "api-0.log"
    path.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)) + b"partial")
    source = FileSource(path, name="api-0")
    assert source.tail(3) == ["line 998", "line 999", "partial"]
    assert source.poll() == ([], False)
    with path.open("ab") as file:
        file.write(b"next\nhalf")
    assert source.poll() == (["next"], False)  # "half" waits for its newline
    with path.open("ab") as file:
        file.write(b" done\n")
    assert source.poll() == (["half done"], False)


def test_rotation_missing_files_and_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "api-0.log"
    source = FileSource(path, name="api-0")
    assert source.tail(10) == [] and source.poll() == ([], False)  # not written yet
    path.write_bytes(b"a\n" + b"x" * (3 * MAX_LINE_BYTES) + b"\n")
    assert source.poll()[0][0] == "a"
    long_line = source.tail(1)[0]
    assert len(long_line.encode()) == MAX_LINE_BYTES and long_line.endswith(TRUNCATED_MARK)
    path.rename(tmp_path / "api-0.log.1")  # the backend rotates at a start
    path.write_bytes(b"fresh\n")
    assert source.poll() == (["fresh"], False)


def test_a_huge_file_is_read_within_the_bounds(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"y" * 100 + b"\n" + (b"z" * 99 + b"\n") * 30_000)  # 3 MB
    source = FileSource(path, name="big")
    assert len(source.tail(10_000)) == 10_000
    with path.open("ab") as file:
        file.write((b"w" * 99 + b"\n") * 20_000)  # 2 MB more at once
    lines, skipped = source.poll()
    assert skipped and sum(len(line) + 1 for line in lines) <= MAX_TAIL_BYTES


# -- LogServer ----------------------------------------------------------------------------
class Node:
    """A log server of node default/n1 over files in a directory, publishing to a list."""

    def __init__(self, directory: Path, **options: Any) -> None:
        self.directory = directory
        self.chunks: list[tuple[float, dict[str, Any]]] = []
        self.done = threading.Event()
        self.server = LogServer(self.find, publish=self.publish, topics=T, namespace="default",
                                node="n1", poll_seconds=0.05, **options)

    def find(self, app: str, service: str | None) -> list[LogSource]:
        paths = sorted(self.directory.glob(f"{app}-*.log"))
        if not paths:
            raise LookupError(f"app {app!r} does not run on this node")
        return [FileSource(path, name=path.stem) for path in paths]

    def publish(self, topic: str, body: bytes) -> None:
        assert topic == DATA
        chunk = json.loads(body)
        self.chunks.append((time.monotonic(), chunk))
        if chunk.get("done"):
            self.done.set()

    def ask(self, **request: Any) -> None:
        self.server.submit(REQUEST, json.dumps({"streamId": "s1", "op": "open", **request}).encode())

    def op(self, op: str, stream_id: str = "s1") -> None:
        self.server.submit(REQUEST, json.dumps({"streamId": stream_id, "op": op}).encode())

    def lines(self) -> list[str]:
        return [line for _, chunk in self.chunks for line in chunk["lines"]]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = Node(tmp_path)
    yield made
    made.server.close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_tail_in_chunks_then_done(node: Node, tmp_path: Path) -> None:
    (tmp_path / "web-0.log").write_text("".join(f"{i:0999d}\n" for i in range(200)))  # 200 kB
    node.ask(app="web", tail=150)
    assert node.done.wait(5)
    assert [int(line) for line in node.lines()] == list(range(50, 200))
    bodies = [chunk for _, chunk in node.chunks]
    assert [chunk["seq"] for chunk in bodies] == list(range(len(bodies)))
    assert all(sum(len(line) + 1 for line in chunk["lines"]) <= MAX_CHUNK_BYTES for chunk in bodies)
    assert len(bodies) >= 3 and bodies[-1]["done"] and not any(c.get("truncated") for c in bodies)
    wait_for(lambda: node.server.open_streams == 0)


def test_several_instances_are_prefixed(node: Node, tmp_path: Path) -> None:
    (tmp_path / "web-0.log").write_text("a\n")
    (tmp_path / "web-1.log").write_text("b\n")
    node.ask(app="web")
    assert node.done.wait(5)
    assert node.lines() == ["[web-0] a", "[web-1] b"]


def test_an_unknown_app_is_a_404_and_a_bad_request_is_ignored(node: Node) -> None:
    node.server.submit(REQUEST, b'{"streamId": "s0", "op": "open", "app": "web", "tail": 10001}')
    node.server.submit(REQUEST, b"not json")
    node.ask(app="nope")
    assert node.done.wait(5)
    assert [chunk for _, chunk in node.chunks] == [{
        "streamId": "s1", "seq": 0, "lines": [], "done": True,
        "error": {"code": 404, "message": "app 'nope' does not run on this node"}}]


def test_chunks_per_second_are_bounded(tmp_path: Path) -> None:
    node = Node(tmp_path, chunks_per_second=5)
    try:
        (tmp_path / "web-0.log").write_text(("x" * 8000 + "\n") * 88)  # 8 lines a chunk
        node.ask(app="web", tail=88)
        assert node.done.wait(10)
        times = [at for at, _ in node.chunks]
        assert len(times) == 11 and node.chunks[-1][1]["done"]  # the last one says done
        for index in range(len(times) - 5):
            assert times[index + 5] - times[index] >= 0.95, "more than 5 chunks in a second"
    finally:
        node.server.close()


def test_follow_sends_new_lines_until_the_lease_runs_out(node: Node, tmp_path: Path) -> None:
    log = tmp_path / "web-0.log"
    log.write_text("old\n")
    node.ask(app="web", tail=1, follow=True, lease=0.6)
    wait_for(lambda: node.lines() == ["old"])
    with log.open("a") as file:
        file.write("new 1\nnew 2\n")
    wait_for(lambda: node.lines() == ["old", "new 1", "new 2"])
    for _ in range(5):  # renewed: it outlives its first lease
        time.sleep(0.2)
        node.op("renew")
    assert not node.done.is_set()
    assert node.done.wait(2)  # no renewal: it ends, and its thread with it
    wait_for(lambda: node.server.open_streams == 0)
    assert not [t for t in threading.enumerate() if t.name.startswith("tether-logs-")]


def test_close_ends_a_follower_and_streams_are_bounded(tmp_path: Path) -> None:
    node = Node(tmp_path, max_streams=1)
    try:
        (tmp_path / "web-0.log").write_text("a\n")
        node.ask(app="web", follow=True, lease=30)
        wait_for(lambda: node.lines() == ["a"])
        node.server.submit(REQUEST, b'{"streamId": "s2", "op": "open", "app": "web"}')
        wait_for(lambda: any(c.get("error") for _, c in node.chunks))
        refused = [c for _, c in node.chunks if c["streamId"] == "s2"]
        assert refused[0]["error"]["code"] == 429 and refused[0]["done"]
        node.op("close")
        assert node.done.wait(2)
        wait_for(lambda: node.server.open_streams == 0)
    finally:
        node.server.close()


def test_closing_the_server_ends_every_stream(node: Node, tmp_path: Path) -> None:
    (tmp_path / "web-0.log").write_text("a\n")
    node.ask(app="web", follow=True, lease=30)
    wait_for(lambda: node.server.open_streams == 1)
    node.server.close()
    assert node.done.is_set() and node.server.open_streams == 0
