"""Who may connect and who may use which topic: the broker's access decisions, pure.

The node rule itself lives in :mod:`schemas.topics` (a node publishes its requests and
subscribes under its own root, DESIGN §4). This module adds what only the broker needs:
the cloud bridge's wider rights, the refusal of everyone else, the rule for a client's
will message, and the rule for what a session may *receive*. It imports no MQTT library,
so the amqtt plugins, a future Mosquitto ACL generator and the tests share one answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from schemas.names import parse_node_identity
from schemas.topics import Suffix, TopicScheme

__all__ = [
    "Authenticator",
    "CertificateCheck",
    "PeerCertificate",
    "TopicAccess",
    "certificate_username",
    "is_shared_filter",
    "password_table",
]

Authenticator = Callable[[str | None, str | None], bool | Awaitable[bool]]
"""``(username, password) -> allowed``, plain or async; only ``True`` admits, raising
counts as "no". The broker awaits an async one on its event loop and runs a plain one in
a worker thread (so it must not rely on running in the caller's thread)."""

CertificateCheck = Callable[[str, str], bool | Awaitable[bool]]
"""``(identity, serial_hex) -> allowed`` for a client certificate the TLS layer already
verified against the CA: is it still current (not revoked)? Plain or async, like
:data:`Authenticator`."""

_SHARE_PREFIX = "$share/"


@dataclass(frozen=True)
class PeerCertificate:
    """The verified client certificate of a TLS connection: its CN and serial (hex)."""

    common_name: str | None
    serial: str


def certificate_username(username: str | None, certificate: PeerCertificate) -> str | None:
    """The MQTT identity of a client with a certificate: its CN, if the CONNECT's username
    is empty or the same; None (refuse) if the username names someone else."""
    common_name = certificate.common_name
    if not common_name:
        return None
    if username and username != common_name:
        return None
    return common_name


def _is_valid_filter(levels: list[str]) -> bool:
    """MQTT 3.1.1 §4.7.1: '#' only as the whole last level, '+' only as a whole level."""
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


@dataclass(frozen=True)
class TopicAccess:
    """Topic rights of one Tether installation (one topic root, one cloud identity).

    - the cloud identity: any topic under the root, any filter under it, and the same
      filters as shared subscriptions ``$share/<group>/<root>/...``;
    - a node identity ``NS/NODE``: the rule of :class:`schemas.topics.TopicScheme`;
    - anyone else (no username, other usernames): nothing.
    """

    scheme: TopicScheme
    cloud_username: str

    def __post_init__(self) -> None:
        if not self.cloud_username or parse_node_identity(self.cloud_username) is not None:
            raise ValueError(f"cloud username {self.cloud_username!r} must not be a node identity")

    # -- who ---------------------------------------------------------------------------
    def is_cloud(self, username: str | None) -> bool:
        return username == self.cloud_username

    def is_known(self, username: str | None) -> bool:
        """True for the cloud and for node identities: the only users that have any right."""
        return self.is_cloud(username) or parse_node_identity(username) is not None

    # -- publish, subscribe, receive ------------------------------------------------------
    def may_publish(self, username: str | None, topic: str) -> bool:
        if self.is_cloud(username):
            return self._is_topic_under_root(topic)
        return self.scheme.node_may_publish(username, topic)

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        if self.is_cloud(username):
            return self._is_filter_under_root(_strip_share(topic_filter))
        return self.scheme.node_may_subscribe(username, topic_filter)

    def may_receive(self, username: str | None, topic: str) -> bool:
        """May a message on ``topic`` be delivered to a session of ``username``?

        Checked again at delivery because a persistent session outlives the connection
        that subscribed: whoever resumes it must not receive more than their own rights.
        A concrete topic is a filter that matches itself, so a node receives exactly what
        it could have subscribed to.
        """
        if self.is_cloud(username):
            return self._is_topic_under_root(topic)
        return self.scheme.node_may_subscribe(username, topic)

    def may_set_will(self, username: str | None, will_topic: str | None) -> bool:
        """A will is a publish made later on the client's behalf: same rule as publish.

        amqtt broadcasts (and retains) a will without any topic check, so this rule is
        enforced when the client connects: a CONNECT with a forbidden will is refused.
        """
        return will_topic is not None and self.may_publish(username, will_topic)

    def may_retain(self, username: str | None, topic: str) -> bool:
        """Only a node's ``status`` is retained (DESIGN §4); the cloud may retain anything
        it may publish. A retained request (``shadow/update``...) would be replayed to the
        cloud on every resubscribe, so for other topics the RETAIN flag is ignored."""
        if self.is_cloud(username):
            return self.may_publish(username, topic)
        parsed = self.scheme.parse(topic)
        return (
            parsed is not None
            and parsed.suffix == Suffix.STATUS
            and self.scheme.node_may_publish(username, topic)
        )

    # -- helpers -------------------------------------------------------------------------
    def _is_topic_under_root(self, topic: str) -> bool:
        return (
            topic.startswith(self.scheme.root + "/")
            and "+" not in topic
            and "#" not in topic
            and "\x00" not in topic
            and all(topic.split("/"))
        )

    def _is_filter_under_root(self, topic_filter: str | None) -> bool:
        if topic_filter is None or "\x00" in topic_filter:
            return False
        if not topic_filter.startswith(self.scheme.root + "/"):
            return False
        return _is_valid_filter(topic_filter.split("/"))


def _strip_share(topic_filter: str) -> str | None:
    """``$share/group/f`` -> ``f``; a plain filter unchanged; a malformed share -> None."""
    if not topic_filter.startswith(_SHARE_PREFIX):
        return topic_filter
    group, sep, rest = topic_filter[len(_SHARE_PREFIX):].partition("/")
    if not sep or not group or any(c in group for c in "+#\x00"):
        return None
    return rest


def is_shared_filter(topic_filter: str) -> bool:
    return topic_filter.startswith(_SHARE_PREFIX)


def password_table(credentials: Mapping[str, str]) -> Authenticator:
    """An authenticator over a fixed ``{username: password}`` table (demo and tests).

    Passwords are compared in constant time; an empty password never matches.
    """
    table = {user: password.encode() for user, password in credentials.items()}

    def authenticate(username: str | None, password: str | None) -> bool:
        expected = table.get(username or "")
        if expected is None or not password:
            return False
        return hmac.compare_digest(expected, password.encode())

    return authenticate
