"""A pod's log through the kube backend (``log_sources``): the tail with
``read_namespaced_pod_log``, then polling for what is new, against the fake API server's
pod log endpoint (``FakeKube.append_log``)."""

from __future__ import annotations

import time

import pytest

from edge_runtime.backends.kube import KubeBackend, podlogs
from edge_runtime.backends.kube.podlogs import parse_stamp, split_stamped
from tests.edge_runtime.kube.backend_support import Live, backend, live, make_bundle, web_app
from tests.edge_runtime.kube.test_backend_status import Controllers, running

__all__ = ["backend", "live"]  # fixtures


@pytest.fixture
def controllers(backend: KubeBackend, live: Live) -> Controllers:
    assert live.fake is not None
    backend.apply(make_bundle(web_app(), "v1"))
    return Controllers(live.fake, live.namespace)


def test_a_pods_tail_then_its_new_lines(
    backend: KubeBackend, controllers: Controllers, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert live.fake is not None
    monkeypatch.setattr(podlogs, "POLL_SECONDS", 0.0)
    controllers.pod("web-api-1", running())
    old = time.time() - 5
    live.fake.append_log(live.namespace, "web-api-1", "one", "two", "three", at=old)
    (source,) = backend.log_sources("web")
    assert source.name == "web-api-1"
    assert source.tail(2) == ["two", "three"]
    assert source.poll() == ([], False)
    live.fake.append_log(live.namespace, "web-api-1", "four", "five")
    assert source.poll() == (["four", "five"], False)
    assert source.poll() == ([], False)  # nothing twice
    assert backend.log_sources("web", "api")[0].tail(1) == ["five"]
    request = next(r for r in live.fake.requests if r.path.endswith("/pods/web-api-1/log"))
    assert request.query["tailLines"] == "2" and request.query["timestamps"] == "true"
    assert request.query["container"] == "api"


def test_no_pod_is_a_lookup_error(backend: KubeBackend, controllers: Controllers) -> None:
    with pytest.raises(LookupError, match="no pod of app 'web'"):
        backend.log_sources("web")
    with pytest.raises(LookupError, match="service 'db' of app 'web'"):
        backend.log_sources("web", "db")


@pytest.mark.parametrize(
    ("text", "stamp"),
    [("2026-12-06T15:00:00.123456789Z", (1796569200, 123456789)),
     ("2026-12-06T15:00:00.5Z", (1796569200, 500000000)),
     ("2026-12-06T15:00:00Z", (1796569200, 0)),
     ("not-a-time", None), ("2026-12-06T15:00:00.xZ", None)],
)
def test_parse_stamp(text: str, stamp: tuple[int, int] | None) -> None:
    assert parse_stamp(text) == stamp


def test_split_stamped_keeps_unstamped_lines() -> None:
    assert split_stamped("2026-12-06T15:00:00Z a b\nplain\n") == [
        ((1796569200, 0), "a b"), (None, "plain")]


def test_the_fake_answers_pod_logs_as_the_api_server_does(live: Live, controllers: Controllers) -> None:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    assert live.fake is not None
    controllers.pod("web-api-1", running())
    live.fake.append_log(live.namespace, "web-api-1", "old", at=time.time() - 100)
    live.fake.append_log(live.namespace, "web-api-1", "new")
    core = CoreV1Api(live.fake.api_client())
    assert core.read_namespaced_pod_log("web-api-1", live.namespace) == "old\nnew\n"
    assert core.read_namespaced_pod_log("web-api-1", live.namespace, since_seconds=10) == "new\n"
    assert core.read_namespaced_pod_log("web-api-1", live.namespace, limit_bytes=2) == "ol"
    for call in (lambda: core.read_namespaced_pod_log("nope", live.namespace),
                 lambda: core.read_namespaced_pod_log("web-api-1", live.namespace, container="x")):
        with pytest.raises(ApiException) as raised:
            call()
        assert raised.value.status in (400, 404)
