"""The cloud-backed authenticator, against an in-memory HTTP transport, and in a broker."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from broker.embedded import run_in_thread
from broker.plugins import HttpAuthenticator, http_authenticator
from broker.settings import BrokerSettings
from tests.broker.clients import Probe
from tests.broker.conftest import NODE_A

URL = "http://cloud.test/v1/broker/authenticate"


class FakeCloud:
    """Answers like the cloud's authenticate endpoint and records what it was asked."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status)

    def authenticator(self) -> HttpAuthenticator:
        return HttpAuthenticator(URL, "s3cret", transport=httpx.MockTransport(self))


def _ask(auth: HttpAuthenticator, *calls: tuple[str | None, str | None]) -> list[bool]:
    async def run() -> list[bool]:
        try:
            return [await auth(user, pw) for user, pw in calls]
        finally:
            await auth.aclose()

    return asyncio.run(run())


def test_200_allows_and_the_request_carries_the_token_and_credentials() -> None:
    cloud = FakeCloud(200)
    assert _ask(cloud.authenticator(), (NODE_A, "pw")) == [True]
    request = cloud.requests[0]
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert json.loads(request.content) == {"username": NODE_A, "password": "pw"}


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
def test_anything_but_200_denies(status: int) -> None:
    assert _ask(FakeCloud(status).authenticator(), (NODE_A, "pw")) == [False]


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")], ids=["unreachable", "timeout"]
)
def test_an_unreachable_cloud_denies(error: Exception) -> None:
    assert _ask(FakeCloud(error=error).authenticator(), (NODE_A, "pw")) == [False]


def test_yes_is_cached_briefly_and_no_is_never_cached() -> None:
    cloud = FakeCloud(200)
    auth = cloud.authenticator()
    assert _ask(auth, (NODE_A, "pw"), (NODE_A, "pw"), (NODE_A, "other")) == [True, True, True]
    assert len(cloud.requests) == 2  # the repeated pair came from the cache
    cloud.status = 401
    assert _ask(auth, (NODE_A, "wrong"), (NODE_A, "wrong")) == [False, False]
    assert len(cloud.requests) == 4


def test_empty_credentials_are_denied_without_asking() -> None:
    cloud = FakeCloud(200)
    assert _ask(cloud.authenticator(), (None, "pw"), (NODE_A, ""), ("", "pw")) == [False, False, False]
    assert cloud.requests == []


def test_the_factory_builds_one() -> None:
    assert isinstance(http_authenticator(URL, "t"), HttpAuthenticator)


def test_a_broker_admits_whom_the_cloud_admits(settings: BrokerSettings) -> None:
    cloud = FakeCloud(200)
    with run_in_thread(settings, cloud.authenticator()) as running:
        probe = Probe(running.port, NODE_A, "from-activation")
        try:
            assert not probe.connect().is_failure
        finally:
            probe.close()
        cloud.status = 401
        refused = Probe(running.port, NODE_A, "revoked")
        try:
            assert refused.connect().is_failure
        finally:
            refused.close()
    assert [json.loads(r.content)["password"] for r in cloud.requests] == ["from-activation", "revoked"]
