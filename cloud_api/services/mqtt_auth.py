"""Who may connect to the broker: the cloud bridge, and activated nodes as ``NS/NODE``.

The embedded broker calls this in-process (``Cloud.authenticate_mqtt``); a standalone
broker asks ``POST /v1/broker/authenticate``. A client certificate is checked by serial
(``authenticate_certificate``): the TLS layer proved it is ours, this says it is current.
Topic access is a separate, pure rule
(``schemas.topics.TopicScheme.node_may_publish``), applied by the broker.

A broker that asks the cloud about every client and every topic (RabbitMQ's HTTP auth
backend, EMQX's HTTP authn/authz: ``cloud_api.security.broker_webhooks``) gets its
answers from ``BrokerAccess``: who may log in (a password, or a certificate the broker's
TLS verified, for which it sends no password and no serial), and what a logged-in user
may publish and subscribe. The bridge user may do anything; a node only what the topic
rule gives it. A revoked node has no credential left, so it is refused at its next
connect whatever it presents.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from cloud_api.security.credentials import broker_hash, hash_secret, same_secret, secret_matches
from cloud_api.services.node_certificates import certificate_allowed
from cloud_api.store.models import NodeCertificate, NodeCredential
from schemas.names import node_client_id, parse_node_identity
from schemas.topics import TopicScheme

# Compared against when there is no credential, so that an unknown node costs the same
# time as a wrong password and timing does not reveal which nodes exist.
_NO_CREDENTIAL = hash_secret("no credential")


def authenticate_mqtt(
    session: Session,
    username: str | None,
    password: str | None,
    *,
    bridge_username: str,
    bridge_password: str,
) -> bool:
    """Whether ``username``/``password`` may connect; malformed input is simply False."""
    if not username or password is None:
        return False
    if username == bridge_username:
        return same_secret(password, bridge_password)
    identity = parse_node_identity(username)
    if identity is None:
        return False
    credential = session.get(NodeCredential, identity)
    matched = secret_matches(password, credential.password_hash if credential else _NO_CREDENTIAL)
    return matched and credential is not None


def authenticate_certificate(
    session: Session, identity: str | None, serial: str | None, *, now: int
) -> bool:
    """Whether a client certificate (verified by the broker's TLS against our CA) may
    connect: its serial must be a current, unrevoked certificate of the node in its CN."""
    return certificate_allowed(session, identity, serial, now=now)


def holds_current_certificate(session: Session, identity: str | None, *, now: int) -> bool:
    """Whether the node ``identity`` holds a certificate neither revoked nor expired: what a
    broker that maps client certificates to usernames (RabbitMQ ``ssl_cert_login``, EMQX
    ``cert_common_name``) can be told, since it sends the CN and not the serial."""
    parsed = parse_node_identity(identity)
    if parsed is None:
        return False
    query = select(NodeCertificate.serial).where(
        col(NodeCertificate.namespace) == parsed[0],
        col(NodeCertificate.node) == parsed[1],
        col(NodeCertificate.revoked_at).is_(None),
        col(NodeCertificate.not_after) > now,
    )
    return session.exec(query.limit(1)).first() is not None


@dataclass(frozen=True)
class BrokerAccess:
    """What a broker that asks is told: who logs in, and what each user may do."""

    session: Session
    topics: TopicScheme
    bridge_username: str
    bridge_password: str
    now: int

    def login(self, username: str | None, password: str | None, *,
              client_id: str | None = None) -> bool:
        """A password login, or (``password`` None) a certificate login the broker's TLS
        verified. A node must use its own client id where the broker says which it used,
        so it can neither take over another node's session nor be taken for it."""
        if not username:
            return False
        if client_id is not None and not self.owns_client_id(username, client_id):
            return False
        if password is None:
            return holds_current_certificate(self.session, username, now=self.now)
        return authenticate_mqtt(self.session, username, password,
                                 bridge_username=self.bridge_username,
                                 bridge_password=self.bridge_password)

    def owns_client_id(self, username: str, client_id: str) -> bool:
        if username == self.bridge_username:
            return True  # the bridge, and its session kicker (which takes node ids over)
        parsed = parse_node_identity(username)
        return parsed is not None and client_id == node_client_id(*parsed)

    def may_publish(self, username: str | None, topic: str) -> bool:
        return bool(username) and (username == self.bridge_username
                                   or self.topics.node_may_publish(username, topic))

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        return bool(username) and (username == self.bridge_username
                                   or self.topics.node_may_subscribe(username, topic_filter))

    def known(self, username: str | None) -> bool:
        """The bridge or a well-formed node identity (vhost and resource checks: the topic
        rules do the confining)."""
        return bool(username) and (username == self.bridge_username
                                   or parse_node_identity(username) is not None)


def broker_users(
    session: Session, *, bridge_username: str, bridge_password: str, topic_root: str, now: int
) -> dict[str, object]:
    """Who a broker that keeps its own user list must admit, without a single password:
    the bridge and each node with a bcrypt hash (``passwordHash``), each node holding a
    current certificate (``certificate``: its CN is its username), and the nodes whose
    password predates the bcrypt hash (``needsActivation``: activate them again). A
    revoked node has neither, so it is left out and its next connect is refused."""
    users: dict[str, dict[str, object]] = {}
    stale: list[str] = []
    for credential in session.exec(select(NodeCredential)).all():
        identity = f"{credential.namespace}/{credential.node}"
        if credential.broker_password_hash is None:
            stale.append(identity)
        else:
            users[identity] = {"username": identity,
                               "passwordHash": credential.broker_password_hash}
    certified = select(NodeCertificate.namespace, NodeCertificate.node).where(
        col(NodeCertificate.revoked_at).is_(None), col(NodeCertificate.not_after) > now
    ).distinct()
    for namespace, node in session.exec(certified).all():
        identity = f"{namespace}/{node}"
        users.setdefault(identity, {"username": identity})["certificate"] = True
    return {
        "topicRoot": topic_root,
        "bridge": {"username": bridge_username,
                   "passwordHash": broker_hash(bridge_password, deterministic=True)},
        "users": [users[name] for name in sorted(users)],
        "needsActivation": sorted(stale),
    }
