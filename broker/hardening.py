"""amqtt's ``Broker`` with the holes that matter to Tether closed.

amqtt 0.12 is a fine embedded broker for one machine, but several of its behaviours
would let a client see, break or block what is not its own. The plugin API cannot reach
them, so :class:`TetherBroker` overrides the few methods involved (pinned to amqtt
0.12.x by ``pyproject.toml``; the tests in ``tests/broker`` fail if an upgrade changes
them):

1. **Session state before authentication.** amqtt deletes (clean session) or takes over
   (persistent session) the session of the client id in a CONNECT *before* it asks the
   auth plugins; a refused client also leaves a "connected" session behind. Anyone who
   can reach the port could wipe or kick any client by its id. Here a client is
   authenticated first, and a client id held by a session of another user is refused
   (CONNACK 2, identifier rejected).
2. **Retained messages on connect.** amqtt sends a connecting client the retained
   messages of *every* filter any client subscribed to, without a topic check. Here a
   client gets the retained messages of its own subscriptions that it may receive.
3. **Keep-alive.** amqtt never closes a connection whose client went silent, so a node
   that lost its network (no TCP FIN) would never have its will ("offline") published.
   Here a client silent for 1.5 times its keep-alive is disconnected and its will sent.
4. **Take-over.** A second connection with the client id of a connected session leaves
   the first one running (clean session), or leaves the resumed session marked
   disconnected (persistent). Here the old connection is closed, its will sent, first.
5. **Unbounded reads.** amqtt has no packet size limit (a CONNECT may announce 256 MB)
   and no deadline for the CONNECT. Here a field larger than ``max_packet_bytes`` closes
   that connection, and a CONNECT must arrive within ``connect_timeout``.
6. **Retained requests.** A client may set RETAIN on any topic it may publish; a retained
   ``shadow/update`` would be replayed to the cloud on every resubscribe. Here RETAIN is
   honoured only where :meth:`TopicAccess.may_retain` allows (a node's ``status``).
7. **QoS 1 to persistent sessions.** amqtt forgets a QoS 1 message sent to a client that
   disconnects before its PUBACK, and marks messages queued while a client was away as
   retained when it finally sends them. Here an unacknowledged message stays in the
   session and is sent again (DUP) on reconnect [MQTT-4.4.0-1], and queued messages go
   out with RETAIN 0, as the live ones would have.
8. **Client certificates.** amqtt's TLS listener asks for a client certificate but never
   requires one (``CERT_OPTIONAL``), and tells the auth plugins nothing about it. Here a
   listener can require one (mTLS, ``CERT_REQUIRED``: no certificate or one from another
   CA fails the handshake), and the verified certificate's CN and serial are handed to the
   auth plugin (``Session.attributes[PEER_CERTIFICATE]``), which makes the CN the identity.
9. **Revocation.** ``disconnect_user`` closes every connection of an identity now, and
   ``recheck`` asks the authenticator again about every connected client.
10. **Subscriptions changing during a broadcast.** amqtt walks its table of subscriptions
    while it awaits each subscriber's topic check; a SUBSCRIBE, UNSUBSCRIBE or disconnect
    in that moment raised "dictionary changed size during iteration", and the message
    was lost for every subscriber not yet reached (or, when a list shrank, one was
    skipped). Here every walk of the table runs over a snapshot taken when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BrokerConfig, ListenerConfig
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import OUTGOING, IncomingApplicationMessage, OutgoingApplicationMessage, Session

from broker.access import PeerCertificate, TopicAccess
from broker.plugins import PEER_CERTIFICATE, Gatekeeper

__all__ = ["TetherBroker"]

log = logging.getLogger(__name__)

_ADMITTED = "tether.admitted"  # Session.attributes key: authenticated before session setup
_WILL_FIELDS = ("will_flag", "will_message", "will_topic", "will_qos", "will_retain")
_CONNECTION_FIELDS = (
    "keep_alive", "username", "password", "remote_address", "remote_port", "ssl_object",
)
_TAKEOVER_WAIT_SECONDS = 2.0
# CONNACK return codes refusing a client; amqtt ships no type information, so name them here
_NOT_AUTHORIZED: int = NOT_AUTHORIZED
_IDENTIFIER_REJECTED: int = IDENTIFIER_REJECTED


# amqtt ships no type information (no py.typed): to mypy its classes are Any
class _ClientHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's per-connection handler with fixes 3 (keep-alive) and 7 (QoS 1 in flight)."""

    _expiry: asyncio.Future[None] | None = None

    def handle_read_timeout(self) -> None:
        if self._expiry is None:
            client_id = self.session.client_id if self.session else None
            log.info("client %r silent past its keep-alive: closing the connection", client_id)
            self._expiry = asyncio.ensure_future(self.handle_connection_closed())

    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        session = self.session
        try:
            await super()._handle_qos1_message_flow(app_message)
        except asyncio.CancelledError:
            # The connection closed while we waited for the PUBACK; amqtt has already
            # dropped the message from the session. Keep it for the next connection.
            if (
                isinstance(app_message, OutgoingApplicationMessage)
                and app_message.direction == OUTGOING
                and app_message.puback_packet is None
                and app_message.packet_id is not None
                and session is not None
                and not session.clean_session
            ):
                session.inflight_out[app_message.packet_id] = app_message
            raise


@dataclass(frozen=True)
class _Peer:
    """What the TCP/TLS layer knows of a connection before its CONNECT."""

    listener: str
    certificate: PeerCertificate | None


def _peer_certificate(writer: asyncio.StreamWriter) -> PeerCertificate | None:
    """The verified client certificate of a TLS connection, or None."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:  # no certificate (CERT_OPTIONAL), or not verified
        return None
    common_name = None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common_name = value
    serial = str(cert.get("serialNumber", "")).lower().lstrip("0") or "0"
    return PeerCertificate(common_name=common_name, serial=serial)


# amqtt ships no type information (no py.typed): to mypy its classes are Any
class _BoundedReader(ReaderAdapter):  # type: ignore[misc]
    """A stream reader that refuses (and closes the connection on) any oversized read.

    amqtt reads each packet field with one ``read(n)``; the only large one is a PUBLISH
    payload, so bounding ``n`` bounds the memory one packet can take.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_bytes: int,
        peer: _Peer | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max = max_bytes
        self._tripped = False
        self.peer = peer

    async def read(self, n: int = -1) -> bytes:
        if not self._tripped and 0 <= n <= self._max:
            return await self._reader.readexactly(n)
        if not self._tripped:
            self._tripped = True
            peer = self._writer.get_extra_info("peername")
            log.warning("closing %s: it sent a packet over the %d byte limit", peer, self._max)
            self._writer.close()
        raise asyncio.IncompleteReadError(b"", n if n >= 0 else None)

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def _close_quietly(writer: WriterAdapter) -> None:
    with contextlib.suppress(Exception):
        await writer.close()


async def _close_connection(handler: BrokerProtocolHandler) -> None:
    """End a client's connection as if it had dropped (so its will is sent).

    amqtt's ``handle_connection_closed`` only resolves the handler's disconnect waiter,
    which ``start()`` creates *after* CONNACK has gone out: a client closed in that window
    kept its connection. Closing the socket as well ends it in every state; the reader
    then meets EOF and amqtt runs its usual unexpected-disconnect path.
    """
    await handler.handle_connection_closed()
    writer = handler.writer
    if writer is not None:
        await _close_quietly(writer)


class _SubscriptionTable(dict[str, list[tuple[Session, int]]]):
    """amqtt's table of topic filter -> (session, QoS) subscribers, walked over snapshots
    (fix 10): amqtt's loops over it await inside, while other clients' packets change it.

    Only walks are copied (``for filter in table`` and ``items()``); lookups and changes
    go to the table itself, so a subscription made during a walk is kept, and the walk
    already under way simply does not see it.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().__iter__()))

    def items(self) -> list[tuple[str, list[tuple[Session, int]]]]:  # type: ignore[override]
        return [(topic_filter, list(subscribers)) for topic_filter, subscribers in super().items()]


# amqtt ships no type information (no py.typed): to mypy its classes are Any
class TetherBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with the fixes listed in the module docstring."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        access: TopicAccess,
        max_packet_bytes: int,
        connect_timeout: float,
        require_client_cert: frozenset[str] = frozenset(),
        gatekeeper: Gatekeeper | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self._subscriptions = _SubscriptionTable()  # 10: walked over snapshots
        self._writers: set[asyncio.StreamWriter] = set()  # every open connection's
        self._access = access
        self._max_packet_bytes = max_packet_bytes
        self._connect_timeout = connect_timeout
        self._require_client_cert = require_client_cert
        self._gatekeeper = gatekeeper

    # -- 8: TLS listeners -----------------------------------------------------------------
    def _create_ssl_context(self, listener: ListenerConfig) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=listener.get("cafile"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(listener["certfile"], listener["keyfile"])
        required = any(self.listeners_config.get(n) is listener for n in self._require_client_cert)
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        return context

    # -- 9: revocation ---------------------------------------------------------------------
    async def disconnect_user(self, username: str) -> int:
        """Close every connection of ``username`` now (its will is sent); how many."""
        closed = 0
        for client_id, (session, handler) in list(self._sessions.items()):
            if (
                session.username == username
                and handler is not None
                and session.transitions.state == "connected"
            ):
                log.info("disconnecting client %r of revoked user %r", client_id, username)
                await _close_connection(handler)
                closed += 1
        return closed

    async def recheck(self) -> int:
        """Ask again whether each connected client may connect; close those refused now."""
        if self._gatekeeper is None:
            return 0
        closed = 0
        for client_id, (session, handler) in list(self._sessions.items()):
            if handler is None or session.transitions.state != "connected":
                continue
            certificate = session.attributes.get(PEER_CERTIFICATE)
            cert = certificate if isinstance(certificate, PeerCertificate) else None
            if await self._gatekeeper.admits(session.username, session.password, cert):
                continue
            log.info("client %r of user %r is no longer allowed: closing", client_id, session.username)
            await _close_connection(handler)
            closed += 1
        return closed

    # -- 5: bounded reads ----------------------------------------------------------------
    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        peer = _Peer(listener_name, _peer_certificate(writer))
        bounded = _BoundedReader(reader, writer, self._max_packet_bytes, peer)
        self._writers.add(writer)
        try:
            await self._client_connected(listener_name, bounded, StreamWriterAdapter(writer))
        finally:
            # This connection is over. amqtt leaves the socket open on some paths (a
            # connection still in its CONNECT when the broker stops, errors before a
            # session exists); close it here so no socket outlives its event loop.
            self._writers.discard(writer)
            writer.close()

    def abort_connections(self) -> None:
        """Stop listening and drop every connection at once, unsent data and all: for a
        shutdown that did not finish (``broker.embedded``)."""
        for server in self._servers.values():
            if server.instance is not None:
                server.instance.close()
        for writer in list(self._writers):
            writer.transport.abort()

    # -- 1, 3, 4, 5: CONNECT handling -----------------------------------------------------
    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        peer = f"{remote_address}:{remote_port}"
        read_connect = _ClientHandler.init_from_connect(
            reader, writer, self.plugins_manager, loop=self._loop
        )
        try:
            handler, incoming = await asyncio.wait_for(read_connect, self._connect_timeout)
        except (AMQTTError, MQTTError, NoDataError):
            await _close_quietly(writer)
            raise
        except TimeoutError as exc:
            await _close_quietly(writer)
            raise AMQTTError(f"no CONNECT from {peer} within {self._connect_timeout}s") from exc
        except Exception as exc:  # undecodable bytes must not escape into asyncio's server
            await _close_quietly(writer)
            raise AMQTTError(f"unreadable CONNECT from {peer}: {exc!r}") from exc

        origin = getattr(reader, "peer", None)
        listener = "default"
        if isinstance(origin, _Peer):
            listener = origin.listener
            if origin.certificate is not None:
                incoming.attributes[PEER_CERTIFICATE] = origin.certificate
        refusal = await self._admit(incoming, listener)
        if refusal is not None:
            with contextlib.suppress(Exception):
                await ConnackPacket.build(0, refusal).to_stream(writer)
            await _close_quietly(writer)
            who = f"client {incoming.client_id!r} from {peer}"
            raise MQTTError(f"refused {who} (CONNACK {refusal})")

        return handler, await self._attach_session(incoming)

    async def _admit(self, incoming: Session, listener: str = "default") -> int | None:
        """None if the client may connect, else the CONNACK return code to refuse it with."""
        if not await super()._authenticate(incoming, self.listeners_config[listener]):
            return _NOT_AUTHORIZED
        existing = self._sessions.get(incoming.client_id or "")
        if existing is not None and existing[0].username != incoming.username:
            log.info(
                "refused client id %r to user %r: it is held by a session of user %r",
                incoming.client_id, incoming.username, existing[0].username,
            )
            return _IDENTIFIER_REJECTED
        return None

    async def _attach_session(self, incoming: Session) -> Session:
        client_id = incoming.client_id or ""
        await self._close_connected(client_id)
        session = incoming
        if incoming.clean_session:
            await self._delete_session(client_id)
            incoming.parent = 0
        elif client_id in self._sessions:
            session = self._sessions[client_id][0]
            for field in _WILL_FIELDS + _CONNECTION_FIELDS:
                setattr(session, field, getattr(incoming, field))
            session.attributes.pop(PEER_CERTIFICATE, None)
            if PEER_CERTIFICATE in incoming.attributes:
                session.attributes[PEER_CERTIFICATE] = incoming.attributes[PEER_CERTIFICATE]
            session.parent = 1
        else:
            incoming.parent = 0
        if session.keep_alive > 0:  # MQTT 3.1.1 §3.1.2.10: one and a half times
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        session.attributes[_ADMITTED] = True
        return session

    async def _close_connected(self, client_id: str) -> None:
        """Take-over: close the connection currently holding ``client_id`` (its will fires)."""
        session, handler = self._sessions.get(client_id, (None, None))
        if session is None or handler is None or session.transitions.state != "connected":
            return
        log.info("client %r connected again: closing its previous connection", client_id)
        await handler.handle_connection_closed()
        deadline = self._loop.time() + _TAKEOVER_WAIT_SECONDS
        while session.transitions.state == "connected" and self._loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        # Called by amqtt after session setup; the decision was made before it (fix 1).
        if session.attributes.pop(_ADMITTED, False):
            return True
        admitted: bool = await super()._authenticate(session, listener)
        return admitted

    # -- 2: retained messages ----------------------------------------------------------
    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, _ = subscription
        subscribers = self._subscriptions.get(topic_filter, ())
        granted = [qos for s, qos in subscribers if s.client_id == session.client_id]
        handler = self._get_handler(session)
        if not granted or handler is None:
            return
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            qos = min(granted[0], retained.qos if retained.qos is not None else granted[0])
            send = handler.mqtt_publish(topic, retained.data, qos, retain=True)
            sends.append(asyncio.ensure_future(send))
        # a client that goes away mid-way is not the broker's error
        await asyncio.gather(*sends, return_exceptions=True)

    # -- 7: messages queued while a persistent client was away ----------------------------
    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            send = handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
            sends.append(asyncio.ensure_future(send))
        await asyncio.gather(*sends, return_exceptions=True)

    # -- 6: what may be retained -------------------------------------------------------
    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        if (
            source_session is not None
            and topic_name is not None
            and not self._access.may_retain(source_session.username, topic_name)
        ):
            log.info("not retaining %r from user %r", topic_name, source_session.username)
            return
        await super().retain_message(source_session, topic_name, data, qos)
