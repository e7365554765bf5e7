"""The brokers of the conformance suite, what each can do, and how to run one privately.

A capability a broker lacks is declared with the reason, so a scenario that needs it is
skipped saying why instead of passing (or failing) without a word.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from broker.access import Authenticator
from broker.embedded import run_in_thread
from broker.settings import BrokerSettings
from launcher.brokers.nats import nats_binary, running_nats
from launcher.brokers.rabbitmq import rabbitmq_missing, running_rabbitmq
from launcher.brokers.tls import TlsListener
from launcher.mosquitto import PrivateMosquitto, mosquitto_binary
from schemas.topics import DEFAULT_ROOT


class Capability(enum.StrEnum):
    SHARED_SUBSCRIPTIONS = "shared_subscriptions"
    """``$share/GROUP/filter`` splits messages between subscribers (cloud replicas)."""
    RETAINED_ON_WILDCARD = "retained_on_wildcard"
    """A retained message reaches a new subscription by wildcard (``+/+/status``)."""
    NODE_CREDENTIALS = "node_credentials"
    """A node may connect with the username and password the cloud issued it."""
    CLOUD_AUTH = "cloud_auth"
    """The broker asks the cloud about each client at connect."""
    REFUSES_REVOKED = "refuses_revoked"
    """A revoked node is refused at its next connect (asked, or told by a generated config)."""
    PER_NODE_ACL = "per_node_acl"
    """A node can neither read nor publish another node's topics."""


@dataclass(frozen=True)
class RunningBroker:
    """A started broker: where to connect, and which credentials a client should send."""

    kind: BrokerKind
    url: str
    users: Mapping[str, str] = field(default_factory=dict)
    tls_url: str | None = None
    """An MQTT-over-TLS listener beside ``url`` that maps client certificates to users,
    where the broker was given ``tls`` and can have one beside the plain one (RabbitMQ)."""
    disconnect: Disconnect | None = None
    """Closes an identity's connections now, where the broker can be told to (embedded):
    what a cloud's revocations are subscribed to in the same process (``tether up``)."""
    users_changed: Callable[..., None] | None = None
    """For a broker that keeps its own user list (NATS): bring it up to date with the
    cloud now, as ``tether broker nats-config`` does every interval. None elsewhere."""

    def nodes_changed(self, edit: Callable[[str], str] | None = None) -> None:
        """A node was activated or revoked: tell a broker that keeps its own user list.
        ``edit``: rewrite that list's text before the broker reloads it (tests that break
        a permission on purpose)."""
        if self.users_changed is not None:
            self.users_changed(edit)

    def login(self, username: str | None, password: str | None) -> tuple[str | None, str | None]:
        """The credentials a client with this identity presents here: its own where the
        broker knows it (the users it was started with, or any where the cloud decides),
        none (anonymous) elsewhere."""
        if ({Capability.CLOUD_AUTH, Capability.NODE_CREDENTIALS} & self.kind.capabilities
                or username in self.users):
            return username, password
        return None, None


Disconnect = Callable[[str], object]
Started = tuple[str, Disconnect | None, Callable[..., None] | None]
"""The URL, how to cut an identity off (if the broker can be told), and how to bring its
own user list up to date (if it keeps one)."""


@dataclass(frozen=True)
class Options:
    """How a private broker is started (see ``BrokerKind.running``)."""

    users: Mapping[str, str]
    authenticate: Authenticator | None
    topic_root: str
    webhook: str | None
    tls: TlsListener | None


Starter = Callable[[Path, Options], AbstractContextManager[Started]]


@dataclass(frozen=True)
class BrokerKind:
    name: str
    capabilities: frozenset[Capability]
    lacks: Mapping[Capability, str]
    """For every capability not in ``capabilities``: why the broker does not have it."""
    start: Starter
    missing: Callable[[], str | None]
    """Why this broker cannot run on this machine (a binary is absent), or None."""

    def lacking(self, capability: Capability) -> str | None:
        """None if the broker has ``capability``, else the reason it has not."""
        if capability in self.capabilities:
            return None
        return self.lacks.get(capability, f"{self.name} lacks {capability}")

    @contextmanager
    def running(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] = {},
        authenticate: Authenticator | None = None,
        topic_root: str = DEFAULT_ROOT,
        webhook: str | None = None,
        tls: TlsListener | None = None,
    ) -> Iterator[RunningBroker]:
        """A private instance for the ``with`` block. ``users``: username -> password it
        must accept (the cloud's bridge); ``authenticate``: the cloud's check, for the
        broker in the cloud's process; ``webhook``: the base URL of the cloud's
        ``/v1/broker`` routes (an admin token as basic-auth password in it), for brokers
        that ask the cloud over HTTP; ``topic_root``: for brokers that enforce Tether's
        topic ACL; ``tls``: a TLS listener mapping client certificates to users, for
        brokers that can have one beside the plain listener (RabbitMQ; ignored elsewhere).
        The capabilities declared are those of a broker given all of these."""
        options = Options(users, authenticate, topic_root, webhook, tls)
        with self.start(directory, options) as started:
            url, disconnect, users_changed = started
            tls_url = tls.url if tls is not None and self.name == "rabbitmq" else None
            yield RunningBroker(self, url, dict(users), tls_url, disconnect, users_changed)


@contextmanager
def _embedded(directory: Path, options: Options) -> Iterator[Started]:
    users, authenticate = options.users, options.authenticate

    def check(username: str | None, password: str | None) -> bool | object:
        if username is not None and username in users:
            return users[username] == password
        return authenticate(username, password) if authenticate is not None else False

    settings = BrokerSettings(host="127.0.0.1", port=0, topic_root=options.topic_root)
    with run_in_thread(settings, check) as broker:  # type: ignore[arg-type]
        yield broker.url, broker.disconnect_user_threadsafe, None


@contextmanager
def _mosquitto(directory: Path, options: Options) -> Iterator[Started]:
    with PrivateMosquitto() as mosquitto:
        yield mosquitto.url, None, None


@contextmanager
def _nats(directory: Path, options: Options) -> Iterator[Started]:
    webhook = options.webhook
    cloud = webhook.removesuffix("/").removesuffix("/v1/broker") if webhook else None
    with running_nats(directory / "nats", users=options.users, cloud=cloud,
                      topic_root=options.topic_root) as nats:
        yield nats.url, None, nats.users_changed


@contextmanager
def _rabbitmq(directory: Path, options: Options) -> Iterator[Started]:
    if options.webhook is None:
        raise ValueError("RabbitMQ needs the cloud's webhook URL to know nodes")
    with running_rabbitmq(directory / "rabbitmq", users=options.users, tls=options.tls,
                          webhook=f"{options.webhook.rstrip('/')}/rabbitmq") as url:
        yield url, None, None


def _binary_missing(find: Callable[[], str | None], package: str) -> Callable[[], str | None]:
    return lambda: None if find() else f"{package} is not installed: apt-get install {package}"


NO_CLOUD_AUTH = "asks no one about clients here (anonymous listener)"
NO_SHARE = "grants the SUBACK for $share/ filters but stores them literally: nothing is delivered"

EMBEDDED = BrokerKind(
    name="embedded",
    capabilities=frozenset({Capability.RETAINED_ON_WILDCARD, Capability.NODE_CREDENTIALS,
                            Capability.CLOUD_AUTH, Capability.PER_NODE_ACL,
                            Capability.REFUSES_REVOKED}),
    lacks={Capability.SHARED_SUBSCRIPTIONS: "amqtt refuses $share/ subscriptions"},
    start=_embedded,
    missing=lambda: None,
)
MOSQUITTO = BrokerKind(
    name="mosquitto",
    capabilities=frozenset({Capability.SHARED_SUBSCRIPTIONS, Capability.RETAINED_ON_WILDCARD,
                            Capability.NODE_CREDENTIALS}),
    lacks={
        Capability.CLOUD_AUTH: f"this Mosquitto {NO_CLOUD_AUTH}; Mosquitto never asks per "
        "connect: production uses mTLS + CRL (tests/brokers/test_mosquitto_production.py)",
        Capability.PER_NODE_ACL: "this Mosquitto is anonymous; the production configuration "
        "(`tether broker mosquitto-config`) confines nodes: tests/brokers/"
        "test_mosquitto_production.py",
        Capability.REFUSES_REVOKED: "this Mosquitto is anonymous; production Mosquitto refuses "
        "revoked certificates by CRL: tests/brokers/test_mosquitto_production.py",
    },
    start=_mosquitto,
    missing=_binary_missing(mosquitto_binary, "mosquitto"),
)
NATS = BrokerKind(
    name="nats",
    # users and permissions written by `tether broker nats-config` (broker.nats_auth)
    capabilities=frozenset({Capability.RETAINED_ON_WILDCARD, Capability.NODE_CREDENTIALS,
                            Capability.PER_NODE_ACL, Capability.REFUSES_REVOKED}),
    lacks={
        Capability.SHARED_SUBSCRIPTIONS: f"NATS 2.9 {NO_SHARE}",
        Capability.CLOUD_AUTH: "NATS before 2.10 has no auth callout: it cannot ask the "
        "cloud (`tether broker nats-config` writes its users instead)",
    },
    start=_nats,
    missing=_binary_missing(nats_binary, "nats-server"),
)
RABBITMQ = BrokerKind(
    name="rabbitmq",
    # rabbitmq_auth_backend_http asks the cloud's webhook (cloud_api.security.broker_webhooks)
    capabilities=frozenset({Capability.NODE_CREDENTIALS, Capability.CLOUD_AUTH,
                            Capability.PER_NODE_ACL, Capability.REFUSES_REVOKED}),
    lacks={
        Capability.SHARED_SUBSCRIPTIONS: f"RabbitMQ 3.10 {NO_SHARE}",
        Capability.RETAINED_ON_WILDCARD: "RabbitMQ delivers retained messages only to "
        "exact-topic subscriptions",
    },
    start=_rabbitmq,
    missing=rabbitmq_missing,
)

BROKERS: tuple[BrokerKind, ...] = (EMBEDDED, MOSQUITTO, NATS, RABBITMQ)


def broker_kind(name: str) -> BrokerKind:
    for kind in BROKERS:
        if kind.name == name:
            return kind
    raise KeyError(f"no broker kind {name!r}; known: {', '.join(k.name for k in BROKERS)}")
