"""No input crashes the cloud: garbage on every endpoint and topic gets a 4xx, never a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud_api.metrics import Metrics
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.transport import MemoryPublisher
from cloud_api.runtime import Cloud
from schemas.topics import REPLIES, Suffix

NODE = "/v1/namespaces/default/nodes/n1"
WITH_BODY = [
    ("POST", "/v1/namespaces"),
    ("POST", "/v1/namespaces/default/nodes"),
    ("PATCH", f"{NODE}/shadow"),
    ("POST", "/v1/activate"),
    ("POST", "/v1/broker/authenticate"),
    ("POST", "/v1/tokens"),
]
WITHOUT_BODY = [
    ("GET", "/v1/namespaces"),
    ("GET", "/v1/namespaces/default/nodes"),
    ("GET", NODE),
    ("GET", f"{NODE}/shadow"),
    ("GET", f"{NODE}/init"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("DELETE", NODE),
]
DEEP = b"[" * 100 + b"]" * 100
DEEP_OBJECT = b'{"a":' * 100 + b"1" + b"}" * 100
GARBAGE = {
    "bytes": (b"\x00\x01garbage{", 400),
    "not-utf8": (b'{"name": "\xc3\x28"}', 415),
    "huge": (b"x" * (10 * 1024 * 1024), 413),
    "deep-array": (DEEP, 400),
    "deep-object": (DEEP_OBJECT, 400),
    "empty": (b"", 400),
    "array": (b"[]", 400),
    "string": (b'"x"', 400),
    "number": (b"1", 400),
    "null": (b"null", 400),
    "nan": (b'{"name": NaN}', 400),
    "wrong-types": (b'{"name": 5, "state": "x", "token": [], "username": {}, "role": 1}', 400),
    "nul": (b'{"name": "\\u0000", "token": "\\u0000", "role": "\\u0000"}', 400),
}


def assert_error_shape(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["code"] == response.status_code and response.json()["message"]


@pytest.mark.parametrize("garbage", list(GARBAGE), ids=list(GARBAGE))
def test_garbage_bodies_get_the_right_4xx_everywhere(
    cloud: Cloud, api: httpx.Client, garbage: str
) -> None:
    cloud.create_node("n1")
    body, expected = GARBAGE[garbage]
    for method, path in WITH_BODY:
        response = api.request(method, path, content=body)
        assert response.status_code == expected, (method, path, response.text[:200])
        assert_error_shape(response)
    for method, path in WITHOUT_BODY:
        response = api.request(method, path, content=body)
        assert_error_shape(response)
        if garbage == "huge":  # refused before routing, whatever the method
            assert response.status_code == 413


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
sections = st.sampled_from(["desired", "reported", "delta", "x"])
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "state": st.dictionaries(sections, json_values, max_size=2),
        "version": json_values,
        "clientToken": json_values,
        "name": json_values | st.text(max_size=70),
        "labels": json_values,
        "mode": json_values,
        "token": json_values,
        "username": json_values,
        "password": json_values,
        "role": st.sampled_from(["admin", "editor", "viewer", "root"]) | json_values,
        "namespaces": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_valid.map(lambda v: json.dumps(v).encode())
)
names = st.sampled_from(["default", "n1"]) | st.text(min_size=1, max_size=70)


# One cloud serves every example of a test: its state between examples does not matter here.
ONE_CLOUD = [HealthCheck.function_scoped_fixture]


@settings(max_examples=150, deadline=None, suppress_health_check=ONE_CLOUD)
@given(endpoint=st.sampled_from(WITH_BODY + WITHOUT_BODY), body=bodies, ns=names, node=names)
def test_fuzzed_requests_never_get_a_5xx(
    cloud: Cloud, api: httpx.Client, endpoint: tuple[str, str], body: bytes, ns: str, node: str
) -> None:
    cloud.create_node("n1", exist_ok=True)
    method, path = endpoint
    path = path.replace("/default/", f"/{quote(ns, safe='')}/")
    path = path.replace("/n1", f"/{quote(node, safe='')}")
    assert_error_shape(api.request(method, path, content=body))


@pytest.fixture
def server(cloud: Cloud) -> tuple[ShadowServer, MemoryPublisher]:
    cloud.create_node("n1")
    publisher = MemoryPublisher()
    shadow_server = ShadowServer(
        cloud.store,
        publisher,
        topics=cloud.settings.topics,
        limits=cloud.settings.limits,
        metrics=Metrics(),
    )
    return shadow_server, publisher


@settings(max_examples=200, deadline=None, suppress_health_check=ONE_CLOUD)
@given(
    suffix=st.sampled_from(
        [Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET, Suffix.STATUS]
    ),
    payload=bodies | st.just(DEEP) | st.just(DEEP_OBJECT),
)
# a valid update, which the fuzzer finds only now and then (CI did once)
@example(suffix=Suffix.SHADOW_UPDATE, payload=b'{"state":{"reported":null}}')
def test_fuzzed_messages_get_one_answer_and_never_a_5xx(
    server: tuple[ShadowServer, MemoryPublisher], suffix: Suffix, payload: bytes
) -> None:
    """One 4xx rejection, or the accepted answer (then, for an update, its delta and
    documents), or nothing for a topic without replies."""
    shadow_server, publisher = server
    publisher.clear()
    topic = shadow_server.topics.topic("default", "n1", suffix)
    shadow_server.handle(topic, payload)  # never raises
    replies = publisher.messages
    if suffix not in REPLIES:
        assert replies == []
        return
    accepted, rejected = REPLIES[suffix]
    first, *also = replies
    if first.topic.endswith(rejected.value):
        assert also == []
        assert 400 <= first.json()["code"] < 500
        return
    assert first.topic.endswith(accepted.value)
    published_too = ((Suffix.SHADOW_UPDATE_DELTA.value, Suffix.SHADOW_UPDATE_DOCUMENTS.value)
                     if suffix == Suffix.SHADOW_UPDATE else ())
    assert all(message.topic.endswith(published_too) for message in also)
