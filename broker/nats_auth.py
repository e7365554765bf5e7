"""NATS's users and permissions for Tether, generated from the cloud and kept current.

Why it exists: NATS before 2.10 has no auth callout, so it cannot ask the cloud about a
client the way the embedded broker, RabbitMQ or EMQX do. It reads users from its own
configuration instead, and accepts bcrypt hashes as passwords. ``tether broker
nats-config`` fetches ``GET /v1/broker/users`` (admin token: the bridge and every node,
with bcrypt hashes or as certificate identities, never a password; revoked nodes are
absent), renders an ``authorization`` block (:func:`render`) into the file the NATS
configuration ``include``s, and reloads NATS (SIGHUP, what ``nats-server --signal
reload`` sends) when the users changed. Run it as a service (``--interval``) so new,
re-activated and revoked nodes reach NATS within that interval; a revoked node is refused
at its next connect, and the cloud cuts its open session off itself (session takeover).

What a user may do (MQTT topics are NATS subjects with ``/`` as ``.``, ``+`` as ``*`` and
``#`` as ``>``):

- the bridge: everything;
- a node: publish what ``TopicScheme.node_may_publish`` allows under its own root,
  subscribe under its own root, and the ``$MQTT.sub.>`` subjects NATS delivers QoS 1
  messages to MQTT sessions on.

A node with a certificate is listed under its certificate's subject (``CN=NS/NODE``),
which ``verify_and_map: true`` in the MQTT listener's ``tls`` block maps to it; such a
node connects without a username.

Errors (:class:`~broker.errors.BrokerError`, one line that says what to do)::

    NatsConfigError         the operator must act: a bad token, a wrong URL, a path
    └── CloudUnreachable    worth retrying: no answer, or a 5xx/429 from the cloud
"""

from __future__ import annotations

import json
import os
import signal
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from broker.crl_sync import CrlSyncError, write_atomically
from broker.errors import BrokerError
from schemas.names import parse_node_identity
from schemas.topics import TopicScheme

USERS_PATH = "/v1/broker/users"
TIMEOUT_SECONDS = 10.0
MQTT_DELIVERY = "$MQTT.sub.>"  # NATS hands QoS 1 messages to an MQTT session there


class NatsConfigError(BrokerError):
    """The users could not be fetched or installed; the message says what to change."""


class CloudUnreachable(NatsConfigError):
    """The cloud did not answer, or answered 5xx/429: retry later, keep the last file."""


@dataclass(frozen=True)
class NatsOutcome:
    users: int
    written: bool
    reloaded_pid: int | None = None
    needs_activation: list[str] = field(default_factory=list)


def subject_of(topic_filter: str) -> str:
    """The NATS subject (or wildcard) NATS's MQTT listener uses for an MQTT topic filter."""
    levels = topic_filter.split("/")
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in levels)


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a NATS config string


def _list(items: list[str]) -> str:
    return "[" + ", ".join(_quoted(item) for item in items) + "]"


def node_permissions(topics: TopicScheme, identity: str) -> str:
    parsed = parse_node_identity(identity)
    if parsed is None:
        raise NatsConfigError(f"the cloud listed {identity!r}, which is no node identity")
    publish = [subject_of(f) for f in topics.node_publish_filters(*parsed)]
    subscribe = [subject_of(topics.node_root(*parsed) + "/#"), MQTT_DELIVERY]
    return f"{{publish: {{allow: {_list(publish)}}}, subscribe: {{allow: {_list(subscribe)}}}}}"


def render(document: Mapping[str, Any], *, source: str = "the cloud",
           bridge_certificate: bool = False) -> str:
    """The ``authorization`` block for ``GET /v1/broker/users``'s answer ``document``.
    ``bridge_certificate``: the bridge logs in with a client certificate whose CN is its
    username (an MQTT listener with ``verify_and_map``, where every client has one)."""
    try:
        topics = TopicScheme(str(document["topicRoot"]))
        bridge = document["bridge"]
        everything = 'permissions: {publish: ">", subscribe: ">"}'
        bridge_user = (f"{{user: {_quoted('CN=' + bridge['username'])}, {everything}}}"
                       if bridge_certificate else
                       f"{{user: {_quoted(bridge['username'])}, password: "
                       f"{_quoted(bridge['passwordHash'])}, {everything}}}")
        lines = [
            f"# Written by `tether broker nats-config` from {source}; do not edit: it is",
            "# rewritten whenever the cloud's nodes change.",
            "authorization {",
            "  users = [",
            f"    {bridge_user}",
        ]
        for user in document["users"]:
            identity = str(user["username"])
            permissions = node_permissions(topics, identity)
            if user.get("passwordHash"):
                lines.append(f"    {{user: {_quoted(identity)}, password: "
                             f"{_quoted(user['passwordHash'])}, permissions: {permissions}}}")
            if user.get("certificate"):
                lines.append(f"    {{user: {_quoted('CN=' + identity)}, permissions: {permissions}}}")
    except (KeyError, TypeError, ValueError) as exc:
        raise NatsConfigError(f"{source} answered no user list ({exc}): check --server") from exc
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def fetch_users(
    server: str, token: str, *, verify: ssl.SSLContext | bool = True,
    timeout: float = TIMEOUT_SECONDS, transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    url = server.rstrip("/") + USERS_PATH
    try:
        with httpx.Client(timeout=timeout, transport=transport, verify=verify) as client:
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise CloudUnreachable(
            f"no answer from {url} ({exc}): check --server and that the cloud is up") from exc
    status = response.status_code
    if status == httpx.codes.UNAUTHORIZED:
        raise NatsConfigError(f"{url} refused the token (401): pass the cloud's admin token (--token)")
    if status == httpx.codes.FORBIDDEN:
        raise NatsConfigError(f"{url} answered 403: the token is not an admin token")
    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        raise CloudUnreachable(f"{url} answered {status}: the cloud is busy or failing")
    if status != httpx.codes.OK:
        raise NatsConfigError(f"{url} answered {status}: --server must be the cloud's base URL")
    try:
        document = response.json()
    except ValueError as exc:
        raise NatsConfigError(f"{url} did not answer JSON: check --server") from exc
    if not isinstance(document, dict):
        raise NatsConfigError(f"{url} did not answer a user list: check --server")
    return document


def reload_nats(pid_file: Path) -> int | None:
    """SIGHUP the NATS server whose pid is in ``pid_file`` (its ``pid_file`` setting): it
    re-reads its configuration, and drops clients whose user is gone. None if it is not
    running (it reads the file when it starts)."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise NatsConfigError(f"cannot read {pid_file}: {exc}; check --nats-pid-file") from exc
    if not text.isdigit() or int(text) <= 1:
        raise NatsConfigError(f"{pid_file} does not hold a process id: check --nats-pid-file")
    try:
        os.kill(int(text), signal.SIGHUP)
    except ProcessLookupError:
        return None
    except PermissionError as exc:
        raise NatsConfigError(f"may not signal process {text} from {pid_file}: run "
                              "nats-config as the NATS server's user or root") from exc
    return int(text)


def sync_once(
    server: str, token: str, out: Path, *, pid_file: Path | None = None,
    verify: ssl.SSLContext | bool = True, transport: httpx.BaseTransport | None = None,
    bridge_certificate: bool = False,
) -> NatsOutcome:
    """Fetch, render, and (if it differs from ``out``) write ``out`` and reload NATS."""
    document = fetch_users(server, token, verify=verify, transport=transport)
    text = render(document, source=server.rstrip("/") + USERS_PATH,
                  bridge_certificate=bridge_certificate).encode()
    try:
        current: bytes | None = out.read_bytes()
    except OSError:
        current = None
    stale = [str(name) for name in document.get("needsActivation", [])]
    users = len(document.get("users", []))
    if current == text:
        return NatsOutcome(users, written=False, needs_activation=stale)
    try:
        write_atomically(out, text, mode=0o600)
    except CrlSyncError as exc:
        raise NatsConfigError(str(exc).replace("--out", "--out of nats-config")) from exc
    reloaded = reload_nats(pid_file) if pid_file is not None else None
    return NatsOutcome(users, written=True, reloaded_pid=reloaded, needs_activation=stale)
