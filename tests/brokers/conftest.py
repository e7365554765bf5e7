"""Fixtures of the broker conformance suite: one private broker of each kind per module,
a cloud per test against it, and nodes that speak to that cloud through the broker.

``broker`` is parametrized over ``launcher.brokers.BROKERS`` with module scope, over
brokers started once for the session, all together (``started``), so RabbitMQ's ~10 s
boot happens once and overlaps the other brokers' tests.
A broker whose binary is missing skips with that reason; a scenario that needs a
capability asks ``needs(broker, capability)``, which skips with the broker's own reason;
a module whose every test needs one names it in ``BROKER_NEEDS`` (or the brokers it is
about in ``BROKERS_ONLY``), so no other broker is started for it. Brokers are started once
per session (``started``); a module that uses one without the ``broker`` parameter names
it in ``BROKERS_WANTED`` and takes it with ``started_broker``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cloud_api.runtime import Cloud
from cloud_api.security.pki import CertificateAuthority
from cloud_api.services.nodes import get_node
from cloud_api.settings import CloudSettings
from launcher.brokers import BROKERS, BrokerKind, Capability, RunningBroker, broker_kind
from launcher.brokers.processes import free_port
from launcher.brokers.tls import TlsListener
from schemas.topics import DEFAULT_ROOT, TopicScheme
from tests.brokers.nodes import NAMESPACE, TIMEOUT, SuiteNode
from tests.cloud_api.conftest import admin_token, serving

BRIDGE_USER = "tether-cloud"
BRIDGE_PASSWORD = "suite-bridge-password"
TOPICS = TopicScheme(root=DEFAULT_ROOT)


WEBHOOK_TOKEN = "suite-webhook-admin-token"  # every cloud of the suite has it as admin token


class Gate:
    """The cloud of the test at hand, for brokers that ask it: the embedded broker's
    password check (``__call__``), and the webhook RabbitMQ asks over HTTP (``answer``)."""

    def __init__(self) -> None:
        self.cloud: Cloud | None = None
        self.asked: list[tuple[str, str]] = []  # (path, form body) of each webhook request

    def __call__(self, username: str | None, password: str | None) -> bool:
        return self.cloud is not None and self.cloud.authenticate_mqtt(username, password)

    async def answer(self, scope: Any, receive: Any, send: Any) -> None:
        if self.cloud is None:  # between tests: the broker's question gets no answer
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no cloud"})
            return
        body = b""

        async def recorded() -> Any:
            nonlocal body
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                self.asked.append((scope["path"], body.decode(errors="replace")))
            return message

        await self.cloud.app(scope, recorded, send)


@pytest.fixture(scope="session")
def gate() -> Iterator[Gate]:
    yield Gate()


@dataclass(frozen=True)
class Pki:
    """The suite's CA (given to the clouds that issue certificates), a server certificate
    for the brokers' TLS listeners, and a client certificate of the bridge (CN its user)."""

    cafile: Path
    cakey: Path
    certfile: Path
    keyfile: Path
    bridge_cert: Path
    bridge_key: Path

    def listener(self) -> TlsListener:
        return TlsListener(free_port(), self.cafile, self.certfile, self.keyfile)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    authority = CertificateAuthority.load_or_create(directory / "ca", common_name="Suite CA")
    files = [directory / name for name in ("broker.crt", "broker.key", "bridge.crt", "bridge.key")]
    for (cert_file, key_file), (name, server) in zip(
        (files[:2], files[2:]), (("localhost", True), (BRIDGE_USER, False))
    ):
        cert, key = authority.issue(name, sans=["localhost", "127.0.0.1"] if server else [],
                                    days=1, server=server)
        cert_file.write_text(cert)
        key_file.write_text(key)
    return Pki(directory / "ca" / "ca.crt", directory / "ca" / "ca.key", *files)


@pytest.fixture(scope="session")
def webhook(gate: Gate) -> Iterator[str]:
    """The base URL of the ``/v1/broker`` routes of whichever cloud the test opened, with
    the suite's admin token as the basic-auth password (as RabbitMQ is configured)."""
    class Asgi:  # an instance with an async __call__: uvicorn takes it for ASGI 3
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await gate.answer(scope, receive, send)

    with serving(Asgi()) as url:  # type: ignore[arg-type]
        yield url.replace("http://", f"http://tether:{WEBHOOK_TOKEN}@") + "/v1/broker"


def _unusable(kind: BrokerKind, module: Any) -> str | None:
    """Why the module's tests cannot run on ``kind`` at all (then it is never started)."""
    if (only := getattr(module, "BROKERS_ONLY", None)) is not None and kind.name not in only:
        return f"{kind.name}: this module is about {', '.join(only)} only"
    if (missing := kind.missing()) is not None:
        return f"{kind.name}: {missing}"
    for capability in getattr(module, "BROKER_NEEDS", ()):
        if (reason := kind.lacking(capability)) is not None:
            return f"{kind.name} lacks {capability}: {reason}"
    return None


def _wanted(items: list[pytest.Item]) -> set[str]:
    """The broker kinds some selected test of the suite can use."""
    wanted: set[str] = set()
    for item in items:
        module = getattr(item, "module", None)
        if module is None or "tests.brokers" not in module.__name__:
            continue
        names = [item.callspec.params["broker"]] if hasattr(item, "callspec") and \
            "broker" in item.callspec.params else list(getattr(module, "BROKERS_WANTED", ()))
        wanted.update(name for name in names if _unusable(broker_kind(name), module) is None)
    return wanted


@pytest.fixture(scope="session")
def started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, gate: Gate,
    webhook: str, pki: Pki,
) -> Iterator[dict[str, Future[RunningBroker]]]:
    """Every broker the selected tests use, started once for the session, all at once in
    threads: RabbitMQ's ~10 s boot overlaps the other brokers' tests. RabbitMQ also gets a
    TLS listener mapping client certificates (``tls_url``)."""
    wanted = _wanted(request.session.items)
    kinds = [kind for kind in BROKERS if kind.name in wanted]
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=len(kinds) or 1) as pool:
        def start(kind: BrokerKind) -> RunningBroker:
            directory = tmp_path_factory.mktemp(f"broker-{kind.name}")
            running = kind.running(directory, users={BRIDGE_USER: BRIDGE_PASSWORD},
                                   authenticate=gate, topic_root=TOPICS.root, webhook=webhook,
                                   tls=pki.listener())
            broker = running.__enter__()
            stack.push(running)  # stopped when the session ends (__exit__ is pushed)
            return broker

        futures = {kind.name: pool.submit(start, kind) for kind in kinds}
        try:
            yield futures
        finally:
            wait(futures.values())  # a broker still booting is stopped once it is up


@pytest.fixture(scope="module", params=[kind.name for kind in BROKERS])
def broker(
    request: pytest.FixtureRequest, started: dict[str, Future[RunningBroker]]
) -> RunningBroker:
    kind = next(kind for kind in BROKERS if kind.name == request.param)
    if (reason := _unusable(kind, request.module)) is not None:
        pytest.skip(reason)
    return started[kind.name].result(timeout=120)


def started_broker(started: dict[str, Future[RunningBroker]], name: str) -> RunningBroker:
    """The session's broker ``name`` (a module naming it in ``BROKERS_WANTED``), or skip."""
    if (missing := broker_kind(name).missing()) is not None:
        pytest.skip(f"{name}: {missing}")
    return started[name].result(timeout=120)


def needs(broker: RunningBroker, capability: Capability) -> None:
    """Skip, with the broker's reason, unless it has ``capability``."""
    if (reason := broker.kind.lacking(capability)) is not None:
        pytest.skip(f"{broker.kind.name} lacks {capability}: {reason}")


class Clouds:
    """Opens clouds against the broker (closing them at the test's end); ``gate`` follows
    the last one opened."""

    def __init__(self, broker: RunningBroker, gate: Gate, tmp_path: Path) -> None:
        self.broker, self.gate, self.tmp_path = broker, gate, tmp_path
        self.opened: list[Cloud] = []

    def settings(self, **overrides: Any) -> CloudSettings:
        values: dict[str, Any] = {
            "data_dir": self.tmp_path / "cloud",
            "mqtt_url": self.broker.url,
            "mqtt_username": BRIDGE_USER,
            "mqtt_password": SecretStr(BRIDGE_PASSWORD),
            "topic_root": TOPICS.root,
            "kick_revoked_sessions": False,
        }
        return CloudSettings(**{**values, **overrides})

    def open(self, *, ready: bool = True, **overrides: Any) -> Cloud:
        settings = self.settings(**overrides)
        token_file = Path(settings.admin_token_path)  # the token the brokers' webhook sends
        if not token_file.exists():
            token_file.parent.mkdir(parents=True, exist_ok=True)
            token_file.write_text(WEBHOOK_TOKEN + "\n")
            token_file.chmod(0o600)
        cloud = Cloud(settings)
        self.opened.append(cloud)
        self.gate.cloud = cloud
        if self.broker.disconnect is not None:  # as `tether up` wires the embedded broker
            cloud.revocations.subscribe(self.broker.disconnect)
        bridge = cloud.start_bridge()
        if ready:
            assert bridge.wait_ready(TIMEOUT), f"the bridge did not subscribe on {self.broker.url}"
        return cloud

    def close(self, cloud: Cloud) -> None:
        if cloud in self.opened:
            self.opened.remove(cloud)
            cloud.close()

    def close_all(self) -> None:
        for cloud in list(reversed(self.opened)):
            self.close(cloud)


@pytest.fixture
def clouds(broker: RunningBroker, gate: Gate, tmp_path: Path) -> Iterator[Clouds]:
    opened = Clouds(broker, gate, tmp_path)
    try:
        yield opened
    finally:
        opened.close_all()
        gate.cloud = None


class Nodes:
    """Creates nodes in a cloud, activates them and connects them (closed at the end)."""

    def __init__(self, broker: RunningBroker, unique: str) -> None:
        self.broker, self.unique = broker, unique
        self.connected: list[SuiteNode] = []

    def connect(self, cloud: Cloud, suffix: str = "", *, heartbeat: float | None = None,
                labels: dict[str, str] | None = None) -> SuiteNode:
        name = f"{self.unique}{suffix}"
        cloud.create_node(name, labels=labels, exist_ok=True)
        credentials = self.credentials(cloud, name)
        node = SuiteNode(self.broker, TOPICS, name, credentials=credentials, heartbeat=heartbeat)
        self.connected.append(node)
        return node

    def credentials(self, cloud: Cloud, name: str) -> tuple[str, str | None]:
        """A node ``name`` (created if need be) and a fresh password for it."""
        cloud.create_node(name, exist_ok=True)
        activation = cloud.activate(cloud.issue_activation(name).token)
        self.broker.nodes_changed()  # NATS: as `tether broker nats-config` would
        return activation.mqtt.username, activation.mqtt.password

    def close_all(self) -> None:
        for node in self.connected:
            node.close()


@pytest.fixture
def nodes(broker: RunningBroker, unique_name: str) -> Iterator[Nodes]:
    made = Nodes(broker, unique_name)
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def rest(clouds: Clouds) -> Iterator[Callable[[Cloud], httpx.Client]]:
    """``rest(cloud)``: an admin HTTP client of that cloud's API, served for the test."""
    stack: list[Any] = []

    def client(cloud: Cloud) -> httpx.Client:
        serve = serving(cloud.app)
        url = serve.__enter__()
        http = httpx.Client(base_url=f"{url}/v1/namespaces/{NAMESPACE}", timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {admin_token(cloud)}"})
        stack.append((serve, http))
        return http

    try:
        yield client
    finally:
        for serve, http in reversed(stack):
            http.close()
            serve.__exit__(None, None, None)


def is_online(cloud: Cloud, name: str) -> bool:
    with cloud.store.session() as session:
        return bool(get_node(session, NAMESPACE, name).online)


def wait_for(condition: Callable[[], bool], *, timeout: float = TIMEOUT, what: str) -> float:
    """Seconds until ``condition`` holds; fails saying ``what`` was awaited."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures scenarios recorded (``record_property``), one line per test."""
    lines = []
    for report in terminalreporter.stats.get("passed", []):
        if report.when == "call" and report.user_properties and "tests/brokers" in report.nodeid:
            figures = ", ".join(f"{name} {value}" for name, value in report.user_properties)
            lines.append(f"{report.nodeid.split('::')[-1]}: {figures}")
    if lines:
        terminalreporter.section("broker conformance figures")
        for line in lines:
            terminalreporter.line(line)
