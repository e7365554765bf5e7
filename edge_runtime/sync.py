"""The MQTT link of an edge node: paho-mqtt 2.x behind the small ``Transport`` interface.

It only moves bytes; ``ShadowSync`` decides what they mean. Paho callbacks do nothing
but hand ``Connected``/``Disconnected``/``Message`` events to ``deliver`` (the runner's
queue). What the link does own is the connection policy of DESIGN §4 and §8:

- MQTT 3.1.1, stable client id from the identity, persistent session
  (``clean_session=False``), QoS 1 everywhere, username/password from the identity (a
  node with a certificate and ``certificate_login`` sends no username: the broker maps
  the certificate, as RabbitMQ's ``ssl_cert_login`` and NATS's ``verify_and_map`` do);
- last will: the retained ``status`` ``{"online": false}``, so a node that dies or
  loses its network shows up offline;
- ``TCP_NODELAY`` on the socket: paho leaves Nagle on, which was measured adding about
  20 ms per hop to the shadow round trip;
- its own reconnect loop with exponential backoff and jitter (paho's built-in one has
  no jitter, and a fleet reconnecting in lockstep after a broker restart is a stampede),
  from ``reconnect_min_seconds`` to ``reconnect_max_seconds``, reset on a good connect;
  but a connect that times out or finds no route (the network is down, not the broker)
  is retried within ``reconnect_path_seconds``, so a node is back seconds after its
  link, wherever its backoff stood (``liveness.path_down``);
- its own liveness watchdog (``liveness.Liveness``): a probe the broker answers after
  ``keepalive / 2`` of silence, and the connection dropped if nothing answers within
  another ``keepalive / 2`` -- a half-open link is noticed within one keepalive, where
  paho alone takes up to two; and the broker is told half the keepalive (``broker_keepalive``),
  so that it fires the will within 1.5 x ``keepalive_seconds`` too: MQTT says a broker waits
  1.5 x the keepalive it was told, and Mosquitto 2.0.11 was measured waiting up to 2.2 x
  (its keepalive clock is coarse), 1.1 x ``keepalive_seconds`` at half. paho pings at that
  half when nothing else was sent, so a healthy idle link is never taken for dead;
- on every connect: drop what paho would re-send from the last session (the sync
  decides afresh) and subscribe under the node's own root before the sync publishes;
- every SUBACK is checked. A refused filter is logged once (with the filters and the
  broker's reason; the same refusal again only at debug level), and the link reconnects
  after a backoff with a *clean* session, until the broker grants every filter: a fixed
  permission is picked up by itself, and a broker that kept a broken persistent session
  (NATS 2.9 grants the SUBACK of a restored session yet delivers nothing) starts afresh;
- ``mqtts://``: the broker is verified against the node's ``ca.crt`` (hostname checked);
  a node activated with a CSR presents ``node.crt``/``node.key``, re-read before every
  connection attempt, so a renewed certificate is used from the next reconnect on.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.errors import BrokerUnavailable
from edge_runtime.identity import Identity
from edge_runtime.liveness import Liveness, Verdict, path_down
from edge_runtime.settings import EdgeSettings
from edge_runtime.transport import (
    INVOKE_FILTER,
    LOGS_FILTER,
    QOS,
    RESOURCES_FILTER,
    SUBSCRIBED,
    Connected,
    Disconnected,
    LinkEvent,
    Message,
)
from schemas.messages import status_payload
from schemas.payloads import encode_json
from schemas.shadow import JSONObject
from schemas.topics import Suffix

log = logging.getLogger(__name__)

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
PROBE_FILTER = "liveness"  # under the node's root, never subscribed: unsubscribing it is a ping


def broker_keepalive(keepalive: int) -> int:
    """The keepalive a node asks the broker for: half its own (module docstring)."""
    return max(1, -(-keepalive // 2))


class Backoff:
    """Exponential backoff with equal jitter: a delay in [d/2, d], d doubling up to a cap."""

    def __init__(
        self, minimum: float, maximum: float, *, rng: Callable[[], float] = random.random
    ) -> None:
        self._min, self._max, self._rng = minimum, maximum, rng
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self._max, self._min * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        self._attempt = 0


class MqttLink:
    """One node's connection to the broker, with its own network thread."""

    def __init__(
        self,
        identity: Identity,
        settings: EdgeSettings,
        *,
        deliver: Callable[[LinkEvent], None],
        on_invoke: Callable[[str, bytes], None] | None = None,
        on_logs: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._identity, self._settings, self._deliver = identity, settings, deliver
        # function invocations bypass the sync thread: the invoker answers on its own workers
        self._on_invoke = on_invoke
        self._on_logs = on_logs  # log requests too: the log server streams on its threads
        self._topics = settings.topics
        self._root = self._topics.node_root(identity.namespace, identity.node)
        self._backoff = Backoff(settings.reconnect_min_seconds, settings.reconnect_max_seconds)
        self._keepalive = settings.keepalive_seconds
        self._liveness = Liveness(self._keepalive)
        self._dead: str | None = None  # why the watchdog dropped the current connection
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._reconnect = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_publish: mqtt.MQTTMessageInfo | None = None
        self.attempts = 0  # connection attempts so far (observability, tests)
        self._filters: list[str] = []  # of the last subscribe, to name what a SUBACK refused
        self.refused: list[str] = []  # what the broker refused at the last connect
        self._refusal_logged: list[str] = []  # the refusal last logged at error level
        self._refusal_backoff = Backoff(settings.reconnect_min_seconds,
                                        settings.reconnect_max_seconds)
        self._retry_refused_at: float | None = None  # when to reconnect, clean, to retry
        self._clean_next = False  # the next connection starts a clean session
        self._session_clean = False  # the client's sessions are clean ones
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _make_client(self, *, clean: bool = False) -> mqtt.Client:
        identity = self._identity
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=identity.client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        password = identity.mqtt.password.get_secret_value() if identity.mqtt.password else None
        if not (self._settings.certificate_login and identity.uses_certificate and password is None):
            client.username_pw_set(identity.mqtt.username, password)
        self._ssl_context: ssl.SSLContext | None = None
        if identity.mqtt.tls:
            tls = identity.tls
            if tls is not None:
                context = ssl.create_default_context(cafile=str(tls.cafile))
            else:
                context = ssl.create_default_context(cadata=identity.ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl_context = context
            self._load_certificate()
            client.tls_set_context(context)
        elif password and identity.mqtt.host not in LOOPBACK:
            log.warning("the broker URL %s is not TLS: this node's password travels in clear",
                        identity.mqtt.url)
        client.on_socket_open = self._on_socket_open
        # With this (no-op) hook set, paho never writes to the socket from the thread that
        # calls publish(): it only wakes the network thread, the one writer. Without it,
        # paho writes from the caller's thread whenever loop_start() is not used, and two
        # threads writing one socket can interleave partial packets.
        client.on_socket_register_write = lambda client, userdata, sock: None
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_acknowledged
        client.on_unsubscribe = self._on_acknowledged
        return client

    def _load_certificate(self) -> None:
        tls = self._identity.tls
        if self._ssl_context is None or tls is None or tls.certfile is None or tls.keyfile is None:
            return
        try:
            self._ssl_context.load_cert_chain(str(tls.certfile), str(tls.keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnavailable(
                f"cannot load this node's certificate {tls.certfile}: {exc}",
                retry_after=self._backoff.next(),
            ) from exc

    # -- Transport -----------------------------------------------------------------------
    def publish(self, suffix: Suffix, payload: JSONObject, *, retain: bool = False) -> None:
        if not self._connected.is_set():
            log.debug("offline: not sending %s", suffix.value)
            return
        topic = f"{self._root}/{suffix.value}"
        body = encode_json(payload)
        self._last_publish = self._client.publish(topic, body, qos=QOS, retain=retain)

    def publish_raw(self, topic: str, body: bytes) -> None:
        """Publish ``body`` on a full topic (function results: the suffix names app and function)."""
        if not self._connected.is_set():
            log.debug("offline: not sending to %s", topic)
            return
        self._client.publish(topic, body, qos=QOS)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tether-edge-mqtt", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        """Let the last publish (the offline status) reach the broker, then disconnect."""
        last = self._last_publish
        if self._connected.is_set() and last is not None:
            try:
                last.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.debug("the last message may not have reached the broker: %s", exc)
        self._stopping.set()
        self._client.disconnect()  # queued: the network thread sends it and closes the socket
        if self._thread is not None:
            self._thread.join(timeout + 2.0)

    def reconnect(self) -> None:
        """End the current connection cleanly (no will) and connect again at once, with the
        TLS files re-read: how a renewed certificate is put to use. Any thread."""
        self._reconnect.set()

    # -- network thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._session()
            except BrokerUnavailable as exc:
                if self._stopping.is_set():
                    break
                log.warning("%s; next attempt in %.1f s", exc, exc.retry_after)
                self._stopping.wait(exc.retry_after)

    def _session(self) -> None:
        """One connection, from connect to its end; raises BrokerUnavailable to retry."""
        url = self._identity.mqtt.url
        if self._clean_next != self._session_clean:  # clean after a refusal, then persistent
            self._session_clean = self._clean_next
            self._client = self._make_client(clean=self._clean_next)
        self._clean_next = False
        will = encode_json(dict(status_payload(False, timestamp=int(time.time()))))
        self._client.will_set(f"{self._root}/{Suffix.STATUS.value}", will, qos=QOS, retain=True)
        self.attempts += 1
        self._reconnect.clear()  # this attempt re-reads the certificate anyway
        self._load_certificate()
        try:
            self._client.connect(self._identity.mqtt.host, self._identity.mqtt.port,
                                 keepalive=broker_keepalive(self._keepalive))
        except OSError as exc:
            if path_down(exc):
                path = self._settings.reconnect_path_seconds
                raise BrokerUnavailable(
                    f"cannot reach the broker at {url}: {str(exc) or 'timed out'} (the network "
                    "looks down, not the broker)", retry_after=path / 2 + random.random() * path / 2,
                ) from exc
            raise BrokerUnavailable(f"cannot reach the broker at {url}: {exc}",
                                    retry_after=self._backoff.next()) from exc
        self._liveness.opened(time.monotonic())
        self._dead = None
        period = min(1.0, self._liveness.silence_limit / 4)
        rc = mqtt.MQTT_ERR_SUCCESS
        self._retry_refused_at = None
        retrying_refused = False
        while rc == mqtt.MQTT_ERR_SUCCESS and not self._stopping.is_set():
            if self._reconnect.is_set():
                break
            retry_at = self._retry_refused_at
            if retry_at is not None and time.monotonic() >= retry_at:
                retrying_refused = True
                break
            wait = period if retry_at is None else max(0.01, min(period, retry_at - time.monotonic()))
            rc = self._client.loop(timeout=wait)
            if rc == mqtt.MQTT_ERR_SUCCESS and self._dead is None:
                self._watch()
        if retrying_refused and not self._stopping.is_set():
            self._close()
            if self._connected.is_set():
                self._connected.clear()
                self._deliver(Disconnected(reason="subscriptions refused"))
            log.debug("reconnecting to %s with a clean session to subscribe again", url)
            return
        reconnecting = self._reconnect.is_set() and not self._stopping.is_set()
        if self._stopping.is_set() or reconnecting:
            self._close()
        if self._connected.is_set():
            self._connected.clear()
            self._deliver(Disconnected(reason=mqtt.error_string(rc)))
        if reconnecting:
            self._reconnect.clear()
            self._backoff.reset()
            log.info("reconnecting to %s to use a renewed certificate", url)
            return
        if not self._stopping.is_set():
            reason = self._dead or mqtt.error_string(rc)
            raise BrokerUnavailable(f"the connection to the broker at {url} ended ({reason})",
                                    retry_after=self._backoff.next())

    def _watch(self) -> None:
        """The liveness watchdog, between two passes of paho's loop (network thread)."""
        now = time.monotonic()
        verdict = self._liveness.check(now)
        if verdict is Verdict.PROBE:
            self._client.unsubscribe(f"{self._root}/{PROBE_FILTER}")
        elif verdict is Verdict.DEAD:
            self._dead = (f"nothing heard from the broker for {self._liveness.silent_for(now):.1f} s: "
                          "the link is dead")
            log.warning("%s; dropping the connection", self._dead)
            sock = self._client.socket()
            try:  # paho's next read sees the end of the stream and closes it as lost
                if isinstance(sock, socket.socket):  # an ssl.SSLSocket is one too
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _close(self) -> None:
        """Send DISCONNECT (so the broker drops the will) and close, from this thread."""
        self._client.disconnect()
        for _ in range(10):
            if self._client.socket() is None:
                return
            self._client.loop(timeout=0.1)

    # -- paho callbacks (network thread): hand over, never decide -----------------------
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # not a TCP socket (unix, websockets)
            pass

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("the broker at %s refused this node (%s/%s): %s", self._identity.mqtt.url,
                      self._identity.namespace, self._identity.node, reason)
            return
        self._backoff.reset()
        self._liveness.established(time.monotonic())
        client.drop_out_messages()
        filters = [f"{self._root}/{s.value}" for s in SUBSCRIBED] + [f"{self._root}/{RESOURCES_FILTER}"]
        if self._on_invoke is not None:
            filters.append(f"{self._root}/{INVOKE_FILTER}")
        if self._on_logs is not None:
            filters.append(f"{self._root}/{LOGS_FILTER}")
        self._filters = filters
        client.subscribe([(topic_filter, QOS) for topic_filter in filters])
        self._connected.set()
        log.info("connected to %s as %s", self._identity.mqtt.url, self._identity.mqtt.username)
        self._deliver(Connected())

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        """A refused subscription means this node never hears the cloud: say which and why
        (once), and retry after a backoff on a clean session until all are granted."""
        self._liveness.heard(time.monotonic())
        self.refused = [f"{topic_filter} ({reason})" for topic_filter, reason
                        in zip(self._filters, reasons) if reason.is_failure]
        if not self.refused:
            if self._refusal_logged:
                log.warning("the broker at %s now grants this node's subscriptions",
                            self._identity.mqtt.url)
            self._refusal_logged = []
            self._refusal_backoff.reset()
            return
        delay = self._refusal_backoff.next()
        self._clean_next = True
        self._retry_refused_at = time.monotonic() + delay
        if self.refused == self._refusal_logged:
            log.debug("subscriptions still refused (%s); retrying in %.1f s",
                      ", ".join(self.refused), delay)
            return
        self._refusal_logged = list(self.refused)
        log.error("the broker at %s refused this node's subscriptions %s: it will not hear "
                  "the cloud; check the broker's permissions for %s (retrying with a clean "
                  "session, with backoff)", self._identity.mqtt.url, ", ".join(self.refused),
                  self._identity.mqtt.username)

    def _on_acknowledged(self, client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        """A PUBACK or an UNSUBACK (the watchdog's probe): the link is alive."""
        self._liveness.heard(time.monotonic())

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._liveness.heard(time.monotonic())
        parsed = self._topics.parse(message.topic)
        ours = (self._identity.namespace, self._identity.node)
        if parsed is None or (parsed.namespace, parsed.node) != ours:
            log.debug("ignored a message on %s", message.topic)
            return
        if parsed.suffix is Suffix.FUNCTION_INVOKE:
            if self._on_invoke is not None:
                self._on_invoke(message.topic, bytes(message.payload))
            return
        if parsed.suffix is Suffix.LOGS_REQUEST:
            if self._on_logs is not None:
                self._on_logs(message.topic, bytes(message.payload))
            return
        self._deliver(Message(parsed.suffix, bytes(message.payload)))
