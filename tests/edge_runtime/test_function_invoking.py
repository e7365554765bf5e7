"""The MQTT invoke path: FunctionInvoker with a fake transport (a list of publishes)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.functions.calling import FunctionCaller, Reply
from edge_runtime.functions.directory import FunctionDirectory
from edge_runtime.functions.errors import InvocationTimeout, UnknownFunction
from edge_runtime.functions.invoking import FunctionInvoker
from launcher.bench_functions import start_runtime, stop_runtime
from schemas.topics import TopicScheme

TOPICS = TopicScheme()
INVOKE = TOPICS.function_topic("default", "edge-1", "calc", "add", result=False)
RESULT = TOPICS.function_topic("default", "edge-1", "calc", "add", result=True)


class FakeCaller:
    def __init__(self, outcome: Reply | Exception | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, Any, str | None, float | None]] = []
        self.release = threading.Event()
        self.release.set()

    def invoke(self, app: str, function: str, body: bytes, *, invoke_id: str | None = None,
               timeout: float | None = None, content_type: str = "application/json") -> Reply:
        self.calls.append((app, function, json.loads(body), invoke_id, timeout))
        self.release.wait(10)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome or Reply(invoke_id or "", "application/json", body)


class Published(list[tuple[str, Any]]):
    def __call__(self, topic: str, payload: bytes) -> None:
        self.append((topic, json.loads(payload)))


def invoker(caller: Any, published: Published, **kwargs: Any) -> FunctionInvoker:
    return FunctionInvoker(caller, publish=published, topics=TOPICS, namespace="default", node="edge-1", **kwargs)


def test_a_result_is_published_with_the_invoke_id() -> None:
    caller, published = FakeCaller(), Published()
    invoker(caller, published).handle(INVOKE, b'{"invokeId": "i1", "payload": {"a": 1}, "timeout": 2}')
    assert caller.calls == [("calc", "add", {"a": 1}, "i1", 2)]
    assert published == [(RESULT, {"invokeId": "i1", "result": {"a": 1}})]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (UnknownFunction("no function calc/add"), {"code": 404, "message": "no function calc/add"}),
        (InvocationTimeout("late"), {"code": 504, "message": "late"}),
        (RuntimeError("bug"), {"code": 500, "message": "internal error of the invoker"}),
    ],
)
def test_errors_are_published(outcome: Exception, expected: dict[str, Any]) -> None:
    published = Published()
    invoker(FakeCaller(outcome), published).handle(INVOKE, b'{"invokeId": "i2"}')
    assert published == [(RESULT, {"invokeId": "i2", "error": expected})]


def test_bytes_results_travel_as_base64() -> None:
    published = Published()
    reply = Reply("i3", "application/octet-stream", b"\x00\xff")
    invoker(FakeCaller(reply), published).handle(INVOKE, b'{"invokeId": "i3"}')
    assert published[0][1] == {"invokeId": "i3", "result": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"}


def test_malformed_requests() -> None:
    caller, published = FakeCaller(), Published()
    node = invoker(caller, published)
    node.handle(INVOKE, b'{"invokeId": "i4", "surprise": 1}')  # answerable: 400
    node.handle(INVOKE, b"not json")  # no invokeId: dropped
    node.handle(INVOKE, b'{"payload": 1}')
    other = TOPICS.function_topic("default", "other-node", "calc", "add", result=False)
    node.handle(other, b'{"invokeId": "i5"}')  # not ours
    node.handle(RESULT, b'{"invokeId": "i6"}')  # not an invoke
    assert [(t, b["invokeId"], b["error"]["code"]) for t, b in published] == [(RESULT, "i4", 400)]
    assert caller.calls == []


def test_submit_runs_on_workers_and_answers_429_when_full() -> None:
    caller, published = FakeCaller(), Published()
    caller.release.clear()
    node = invoker(caller, published, workers=1, max_pending=1)
    try:
        node.submit(INVOKE, b'{"invokeId": "slow"}')
        node.submit(INVOKE, b'{"invokeId": "over"}')
        assert published == [(RESULT, {"invokeId": "over", "error": {"code": 429, "message": published[0][1]["error"]["message"]}})]
        caller.release.set()
        for _ in range(500):
            if len(published) == 2:
                break
            threading.Event().wait(0.01)
        assert published[1] == (RESULT, {"invokeId": "slow", "result": None})
    finally:
        node.close()


def test_through_a_real_runtime(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("def handle(event, ctx):\n    return {'sum': event['a'] + event['b']}\n")
    directory = FunctionDirectory(tmp_path / "functions")
    process = start_runtime(tmp_path, "calc.handle", directory.announce_path("calc", "add", 0))
    caller, published = FunctionCaller(directory, timeout=5), Published()
    try:
        node = invoker(caller, published)
        node.handle(INVOKE, b'{"invokeId": "r1", "payload": {"a": 20, "b": 22}}')
        node.handle(INVOKE, b'{"invokeId": "r2", "payload": {"a": 1}}')
    finally:
        caller.close()
        stop_runtime(process)
    assert published[0] == (RESULT, {"invokeId": "r1", "result": {"sum": 42}})
    error = published[1][1]["error"]
    assert error["code"] == 502 and error["error"]["type"] == "KeyError"
