"""Tether's authentication and topic ACL as amqtt plugins, and the cloud-backed authenticator.

amqtt builds its plugins itself, from dotted class paths in the broker config, and fills
each plugin's ``Config`` dataclass from that config's values (checked by ``dacite``).
We hand the plugins their Python collaborators the same way: the value for the
``gatekeeper`` field is a :class:`Gatekeeper` instance, created per broker. dacite
passes an instance of the declared class through untouched, so every broker has its own
authenticator and access rule, and nothing lives in module globals or class attributes.

The decisions themselves are in :mod:`broker.access`; the plugins only translate amqtt's
calls (a session, a topic, an action) into them and make sure nothing a client sends, and
nothing the authenticator raises, escapes into the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.access import (
    Authenticator,
    CertificateCheck,
    PeerCertificate,
    TopicAccess,
    certificate_username,
    is_shared_filter,
)

__all__ = [
    "PEER_CERTIFICATE",
    "Gatekeeper",
    "HttpAuthenticator",
    "TetherAuthPlugin",
    "TetherTopicPlugin",
    "http_authenticator",
    "plugin_config",
]

log = logging.getLogger(__name__)

PEER_CERTIFICATE = "tether.peer_certificate"
"""``Session.attributes`` key: the :class:`PeerCertificate` of a TLS client, set by the
broker from the connection before it asks the auth plugin."""


@dataclass(frozen=True)
class Gatekeeper:
    """What one broker instance asks of Tether: who may connect, who may use which topic."""

    authenticate: Authenticator
    access: TopicAccess
    check_certificate: CertificateCheck | None = None
    """None: any certificate the TLS layer verified is current (no revocation check)."""
    auth_timeout_seconds: float = 10.0

    async def admits(
        self, username: str | None, password: str | None, certificate: PeerCertificate | None
    ) -> bool:
        """Ask the authenticator (password) or the certificate check, within the timeout,
        in a worker thread if it is a plain function. Anything it raises is a no."""
        if certificate is not None:
            check = self.check_certificate
            if check is None or not username:
                return check is None
            call: Any = lambda: check(username, certificate.serial)
            function: object = check
        else:
            if not username or not password:
                return False
            authenticate = self.authenticate
            call = lambda: authenticate(username, password)
            function = authenticate
        try:
            verdict = await asyncio.wait_for(_run(call, function), self.auth_timeout_seconds)
        except Exception:  # the broker must outlive any authenticator bug
            log.exception("refused user %r: the authenticator failed", username)
            return False
        return verdict is True


async def _run(call: Any, function: object) -> object:
    """An async callable on the loop, a plain one in a worker thread, so a slow check (a
    database query, an HTTP call) never stalls other clients."""
    verdict = call() if _is_async(function) else await asyncio.to_thread(call)
    if inspect.isawaitable(verdict):
        return await verdict
    return verdict


def plugin_config(gatekeeper: Gatekeeper) -> dict[str, dict[str, Any]]:
    """The ``plugins`` section of an amqtt broker config: Tether's two plugins, nothing else.

    No logging plugins and no ``$SYS`` plugin: they cost about a third of amqtt's
    throughput and ``$SYS`` would publish broker internals to any subscriber.
    """
    return {
        f"{__name__}.{TetherAuthPlugin.__name__}": {"gatekeeper": gatekeeper},
        f"{__name__}.{TetherTopicPlugin.__name__}": {"gatekeeper": gatekeeper},
    }


# amqtt ships no type information (no py.typed): to mypy its classes are Any
class TetherAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Admits a client when its username and password pass the :class:`Gatekeeper`."""

    @dataclass
    class Config:
        gatekeeper: Gatekeeper

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._gate: Gatekeeper = self.config.gatekeeper

    async def authenticate(self, *, session: Session) -> bool:
        username, password = session.username, session.password
        who = f"client {session.client_id!r} user {username!r}"
        certificate = session.attributes.get(PEER_CERTIFICATE)
        if isinstance(certificate, PeerCertificate):
            # A client certificate is the identity (as Mosquitto's use_identity_as_username):
            # the username may be left out, and may not name anyone else.
            username = certificate_username(username, certificate)
            if username is None:
                log.info("refused %s: its certificate is for %r", who, certificate.common_name)
                return False
            session.username, session.password = username, None
        elif not username or not password:
            log.info("refused %s: a username and a password are required", who)
            return False
        if not self._gate.access.is_known(username):
            log.info("refused %s: neither the cloud nor a node identity NS/NODE", who)
            return False
        if session.will_flag and not self._gate.access.may_set_will(username, session.will_topic):
            log.info("refused %s: will topic %r is not one it may publish", who, session.will_topic)
            return False
        cert = certificate if isinstance(certificate, PeerCertificate) else None
        if not await self._gate.admits(username, password, cert):
            log.info("refused %s: wrong, revoked or expired credentials", who)
            return False
        return True

    async def close(self) -> None:
        """At broker shutdown: release the authenticator's resources if it has any."""
        closer = getattr(self._gate.authenticate, "aclose", None)
        if closer is None:
            return
        try:
            await closer()
        except Exception:  # shutting down must not fail on it
            log.exception("closing the authenticator failed")


def _is_async(function: object) -> bool:
    # a plain async function, or an object whose __call__ is one
    return inspect.iscoroutinefunction(function) or (
        callable(function) and inspect.iscoroutinefunction(function.__call__)
    )


# amqtt ships no type information (no py.typed): to mypy its classes are Any
class TetherTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Applies :class:`broker.access.TopicAccess` to every publish, subscribe and delivery."""

    @dataclass
    class Config:
        gatekeeper: Gatekeeper

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._access: TopicAccess = self.config.gatekeeper.access

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        if session is None or not topic:
            return False
        username = session.username
        if action == Action.RECEIVE:
            return self._access.may_receive(username, topic)
        if action == Action.PUBLISH:
            allowed = self._access.may_publish(username, topic)
        elif action == Action.SUBSCRIBE:
            # amqtt speaks MQTT 3.1.1 and has no shared subscriptions: it would accept
            # "$share/g/f" as a literal filter that never matches. Refusing it (SUBACK 0x80)
            # tells the subscriber at once instead of leaving it waiting for nothing.
            allowed = not is_shared_filter(topic) and self._access.may_subscribe(username, topic)
        else:
            return False
        if not allowed:
            log.info("denied %s of %r to user %r", action, topic, username)
        return allowed


class HttpAuthenticator:
    """Asks the cloud whether a client may connect (DESIGN §7).

    ``POST {auth_url}`` with ``{"username", "password"}`` (a password client, ``__call__``)
    or ``{"username", "certificateSerial"}`` (a client certificate the TLS layer verified,
    ``check_certificate``: is it still current, not revoked?) and a bearer token: 200
    means yes, anything else (401, 403, 5xx, a timeout, a refused connection) means no. A
    password yes is remembered for ``cache_seconds`` so a reconnect storm does not hammer
    the cloud (a certificate check, one key lookup, is not, so a revocation acts at once);
    a no is never remembered, so a node activated a second ago connects at once.
    """

    def __init__(
        self,
        auth_url: str,
        token: str | None,
        *,
        timeout: float = 3.0,
        cache_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = auth_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._cache_seconds = min(cache_seconds, 5.0)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._allowed_until: dict[bytes, float] = {}

    async def __call__(self, username: str | None, password: str | None) -> bool:
        if not username or not password:
            return False
        key = hashlib.sha256(f"{username}\x00{password}".encode()).digest()
        return await self._ask(key, username, {"username": username, "password": password})

    async def check_certificate(self, username: str, serial: str) -> bool:
        """A :data:`~broker.access.CertificateCheck`: the cloud's revocation list decides."""
        if not username or not serial:
            return False
        body = {"username": username, "certificateSerial": serial}
        return await self._ask(None, username, body)  # never cached: revocation is at once

    async def _ask(self, key: bytes | None, username: str, body: dict[str, str]) -> bool:
        now = time.monotonic()
        if key is not None and self._allowed_until.get(key, 0.0) > now:
            return True
        try:
            response = await self._http().post(self._url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            log.warning("refusing %r: no answer from %s: %s", username, self._url, exc)
            return False
        if response.status_code == httpx.codes.OK:
            if key is not None:
                self._remember(key, now + self._cache_seconds)
            return True
        if response.status_code not in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            log.warning("refusing %r: %s answered %s", username, self._url, response.status_code)
        return False

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        return self._client

    def _remember(self, key: bytes, until: float) -> None:
        if len(self._allowed_until) >= 10_000:
            now = time.monotonic()
            self._allowed_until = {k: t for k, t in self._allowed_until.items() if t > now}
        self._allowed_until[key] = until

    async def aclose(self) -> None:
        """Close the HTTP connection pool (called by the auth plugin at broker shutdown)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def http_authenticator(
    auth_url: str, token: str | None, *, timeout: float = 3.0
) -> HttpAuthenticator:
    """An :data:`~broker.access.Authenticator` backed by the cloud's authenticate endpoint."""
    return HttpAuthenticator(auth_url, token, timeout=timeout)
