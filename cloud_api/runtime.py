"""``Cloud``: one cloud process — its store, its REST app and its MQTT bridge — as an object.

``tether cloud serve`` and ``tether up`` both build a ``Cloud`` and run its app with
``serve_http``; ``tether up`` also gives the embedded broker ``Cloud.authenticate_mqtt`` and
creates its local node with ``create_node`` and ``issue_activation``. Opening a ``Cloud``
creates what a fresh install needs: the data dir, the tables, namespace ``default``, the
admin token file, the bridge secret and the CA (``DATA_DIR/ca``, unless one is supplied).

Security hooks for whoever runs the broker next to the cloud: ``authenticate_certificate``
(a client certificate's CN and serial), ``issue_server_certificate`` (the broker's TLS
files) and ``revocations`` (subscribe the broker's disconnect to it).
"""

from __future__ import annotations

import errno
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from cloud_api.errors import ConfigError
from cloud_api.mqtt.bridge import Bridge
from cloud_api.mqtt.functions import FunctionRelay, route_results
from cloud_api.mqtt.kicking import SessionKicker
from cloud_api.mqtt.liveness import Liveness
from cloud_api.mqtt.log_relay import LogRelay, route_node_output
from cloud_api.mqtt.serving import ShadowServer
from cloud_api.mqtt.share_probing import ShareProbe
from cloud_api.mqtt.transport import NullPublisher
from cloud_api.rematching import Rematcher
from cloud_api.rest.app import create_app
from cloud_api.rest.context import Context
from cloud_api.rolling import RolloutDriver
from cloud_api.security.credentials import read_or_create_secret_file
from cloud_api.security.limiting import RateLimiter
from cloud_api.security.revocation import Revocations
from cloud_api.security.server_certificates import ServerFiles, issue_server_files, load_authority
from cloud_api.services.activation import activate, issue_activation_token
from cloud_api.services.agent_rollout import AGENT_SUBJECT
from cloud_api.services.mqtt_auth import authenticate_certificate
from cloud_api.services.namespaces import DEFAULT_NAMESPACE, ensure_namespace
from cloud_api.services.node_certificates import revoke_node_credentials
from cloud_api.services.nodes import create_node, ensure_node, to_public
from cloud_api.services.secrets_crypto import SecretBox
from cloud_api.services.tokens import ensure_admin_token
from cloud_api.settings import CloudSettings
from cloud_api.store.engine import Store
from cloud_api.store.event_writing import EventWriter
from cloud_api.store.models import (
    ActivationRequest,
    ActivationResponse,
    InitResponse,
    NodeCreate,
    NodeMode,
    NodePublic,
)
from schemas.names import node_identity

log = logging.getLogger(__name__)


class Cloud:
    """The cloud of one process. Close it (or use it as a context manager) when done."""

    def __init__(self, settings: CloudSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if settings.mqtt_password is not None:
            bridge_password = settings.mqtt_password.get_secret_value()
        else:
            bridge_password, _ = read_or_create_secret_file(settings.bridge_secret_path)
        self.store = Store(settings.store_url)
        relay = FunctionRelay(
            max_in_flight=settings.function_max_in_flight,
            timeout=settings.function_timeout_seconds,
            max_timeout=settings.function_max_timeout_seconds,
        )
        self.context = Context(
            settings=settings, store=self.store, bridge_password=bridge_password, clock=clock,
            functions=relay, logs=LogRelay(max_streams=settings.logs_max_streams),
        )
        try:
            self.store.create_schema()
            with self.store.session() as session:
                ensure_namespace(session, DEFAULT_NAMESPACE, now=self.context.now())
                ensure_admin_token(session, settings.admin_token_path, now=self.context.now())
        except BaseException:
            self.store.close()
            raise
        self.authority = load_authority(settings)
        self.revocations = Revocations()
        self._kicker: SessionKicker | None = None
        if settings.kick_revoked_sessions:
            self._kicker = SessionKicker(settings, password=bridge_password)
            self.revocations.subscribe(self._kicker)
        self.rematcher = Rematcher(
            self.store, settings, publisher=lambda: self.context.publisher, now=self.context.now,
            backlog=lambda: self.bridge.backlog() if self.bridge is not None else 0,
        )
        self.context.rematcher = self.rematcher
        self.rematcher.start()
        self.rollouts = RolloutDriver(self.store, settings, now=self.context.now,
                                      matching_owed=self.context.matching_owed)
        AGENT_SUBJECT.configure(lambda: self.context.publisher, topics=settings.topics,
                                limits=settings.limits)  # the agent's rollouts publish with it
        self.rollouts.start()
        self.app: FastAPI = create_app(self.context)
        self.app.state.authority = self.authority
        self.app.state.revocations = self.revocations
        self.app.state.activation_limiter = RateLimiter(settings.activation_rate_per_minute)
        self.bridge: Bridge | None = None
        self.liveness: Liveness | None = None
        self.events: EventWriter | None = None  # stores the nodes' events while the bridge runs

    @property
    def admin_token_path(self) -> str:
        return str(self.settings.admin_token_path)

    @property
    def bridge_password(self) -> str:
        """The bridge's MQTT password (from settings or DATA_DIR/bridge.secret)."""
        return self.context.bridge_password

    # -- for the embedded broker and `tether up` --------------------------------------
    def authenticate_mqtt(self, username: str | None, password: str | None) -> bool:
        """Whether a client may connect to the broker (bridge user or ``NS/NODE``)."""
        return self.context.authenticate_mqtt(username, password)

    def create_node(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        labels: Mapping[str, str] | None = None,
        description: str = "",
        mode: NodeMode = NodeMode.NATIVE,
        exist_ok: bool = False,
    ) -> NodePublic:
        """Create a node (and its shadow); with ``exist_ok`` an existing node is returned."""
        node_in = NodeCreate(
            name=name, labels=dict(labels or {}), description=description, mode=mode
        )
        make = ensure_node if exist_ok else create_node
        with self.store.session() as session:
            return to_public(make(session, namespace, node_in, now=self.context.now()))

    def issue_activation(
        self, node: str, *, namespace: str = DEFAULT_NAMESPACE, mode: NodeMode | None = None
    ) -> InitResponse:
        """A one-time activation token and install command, as ``GET .../init`` returns."""
        with self.store.session() as session:
            return issue_activation_token(
                session,
                namespace,
                node,
                mode=mode,
                public_url=self.settings.public_url,
                ttl_seconds=self.settings.activation_token_ttl_seconds,
                now=self.context.now(),
            )

    def activate(self, token: str, *, csr: str | None = None) -> ActivationResponse:
        """Spend an activation token, as ``POST /v1/activate`` does."""
        with self.store.session() as session:
            return activate(
                session,
                ActivationRequest(token=token, csr=csr),
                mqtt_url=self.settings.node_mqtt_url,
                now=self.context.now(),
                authority=self.authority,
                tls_url=self.settings.node_tls_url,
                certificate_days=self.settings.node_certificate_days,
            )

    # -- certificates and revocation ---------------------------------------------------
    def authenticate_certificate(self, identity: str | None, serial: str | None) -> bool:
        """Whether a client certificate (CN ``identity``, ``serial``) may connect."""
        with self.store.session() as session:
            return authenticate_certificate(session, identity, serial, now=self.context.now())

    def issue_server_certificate(
        self, directory: Path, *, common_name: str = "tether-broker", hosts: Sequence[str] = ()
    ) -> ServerFiles:
        """The broker's or the API's TLS files in ``directory``, from this cloud's CA
        (``server_certificates.issue_server_files``: kept while they still serve)."""
        return issue_server_files(
            self.authority, directory, common_name=common_name, hosts=hosts,
            days=self.settings.server_certificate_days, now=self.context.now(),
        )

    def revoke_node(self, node: str, *, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
        """Revoke the node's password and certificates, as ``POST .../revoke`` does, and
        announce it so a connected node is disconnected now. Returns the revoked serials."""
        with self.store.session() as session:
            serials = revoke_node_credentials(session, namespace, node, now=self.context.now())
            session.commit()
        self.revocations.announce(node_identity(namespace, node))
        return serials

    # -- bridge ------------------------------------------------------------------------
    def start_bridge(self) -> Bridge:
        """Connect the MQTT bridge (in the background) and publish REST updates through it."""
        if self.bridge is not None:
            return self.bridge
        context = self.context
        bridge = Bridge(self.settings, password=context.bridge_password, metrics=context.metrics)
        server = ShadowServer(
            self.store,
            bridge,
            topics=self.settings.topics,
            limits=self.settings.limits,
            metrics=self.context.metrics,
            clock=self.context.clock,
            secrets=SecretBox.from_settings(self.settings),
            cut_off=self.revocations.announce,
        )
        handle = route_results(context.functions, self.settings.topics, server.handle_batch)
        self.events = EventWriter(
            self.store, now=context.now, retention_seconds=self.settings.events_retention_seconds,
            max_per_node=self.settings.events_max_per_node,
        )
        self.events.start()
        handle = route_node_output(context.logs, self.events, self.settings.topics, handle)
        if self.settings.liveness_timeout_seconds > 0:
            self.liveness = Liveness(
                self.store, self.settings.topics, timeout=self.settings.liveness_timeout_seconds,
                connected=lambda: bridge.connected, now=context.now,
            )
            handle = self.liveness.watching(handle)
            self.liveness.start()
        if self.settings.share_group:
            probe = ShareProbe(self.settings.topics, self.settings.share_group,
                               publish=lambda topic, payload: bridge.publish(topic, payload),
                               timeout=self.settings.share_probe_seconds)
            handle = probe.watching(handle)
            self.context.share_probe = probe
        bridge.start(handle, refuse=server.refuse)
        if self.context.share_probe is not None:
            self.context.share_probe.start(bridge.wait_ready, lambda: bridge.subscriptions)
        self.bridge = self.context.bridge = bridge
        self.context.publisher = bridge
        return bridge

    def verify_share_group(self, *, timeout: float = 15.0) -> str | None:
        """With a share group: wait (up to ``timeout``) for the probe that proves the broker
        delivers through it; what is wrong (the group's subscriptions refused, or nothing
        delivered through them), or None (it works, or the bridge is not connected yet: the
        probe then runs when it is, and reports in /healthz)."""
        probe, bridge = self.context.share_probe, self.bridge
        if probe is None or bridge is None:
            return None
        deadline = time.monotonic() + timeout
        while not bridge.wait_ready(0.1):  # a refused SUBACK is as clear as a lost probe
            if bridge.refused:
                return bridge.problem
            if time.monotonic() > deadline:
                return None
        return probe.verdict(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop the bridge (the store stays open)."""
        bridge, self.bridge = self.bridge, None
        liveness, self.liveness = self.liveness, None
        probe, self.context.share_probe = self.context.share_probe, None
        if probe is not None:
            probe.close()
        if liveness is not None:
            liveness.close()
        self.context.publisher = NullPublisher()
        self.context.bridge = None
        if bridge is not None:
            bridge.stop()
        events, self.events = self.events, None
        if events is not None:
            events.close()

    def close(self) -> None:
        self.rollouts.close()
        self.rematcher.close()
        self.stop()
        if self._kicker is not None:
            self._kicker.close()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- HTTP --------------------------------------------------------------------------------
def bind_http(host: str, port: int, *, flag: str = "--http-port") -> socket.socket:
    """A listening-ready socket on host:port; a port in use is a one-line ConfigError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} on {host} is already in use"
        else:
            reason = f"cannot listen on {host}:{port}: {exc.strerror}"
        raise ConfigError(f"{reason}: choose another with {flag}") from exc
    # listening now: a client that connects before the server's loop runs waits in the
    # backlog instead of being refused (the banner is printed before uvicorn starts)
    sock.listen(2048)
    return sock


def freeze_startup_heap() -> None:
    """Leave what the process holds once started out of every later garbage collection.

    Why: the modules, the app, its routes and models are ~195,000 objects that live as long
    as the process. Python's full collections walked them all each time, and at 10,000 nodes
    a full collection was a 100-180 ms pause of every thread (the GIL is held), dozens of them
    during a rollout (``tether bench fleet``: 59 pauses over 5 ms, 5.3 s, in one run; 35 and
    0.9 s with this). Objects made later are collected as usual.

    The collector's thresholds stay Python's. Raised to (700, 100, 100), the collections of a
    run's update phase took ~210 ms against 520-640 (20 s, 10,000 nodes, PostgreSQL), but
    updates/s and p99 did not follow in alternate runs (1,147-1,236 against 1,163-1,479/s;
    (5,000, 20, 20): 1,038-1,122/s): the updates were not waiting for the collector.
    """
    gc.collect()
    gc.freeze()


def serve_http(
    app: FastAPI,
    sock: socket.socket,
    *,
    log_level: str = "info",
    tls_certfile: Path | None = None,
    tls_keyfile: Path | None = None,
) -> None:
    """Run the API on ``sock`` (HTTPS if given a certificate and key) until SIGINT or
    SIGTERM; then return normally."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls_certfile) if tls_certfile else None,
        ssl_keyfile=str(tls_keyfile) if tls_keyfile else None,
    )
    with _signals_end_quietly():
        uvicorn.Server(config).run(sockets=[sock])


class _Stopped(Exception):
    pass


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
    that was installed before it. Make those handlers end the run instead of the process, so
    the caller's cleanup (bridge, store) runs and a stopped service exits 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stopped:
        log.info("stopped by signal")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
