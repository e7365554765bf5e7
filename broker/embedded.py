"""Starting and stopping the embedded broker, in an event loop or in a thread of its own.

``tether broker serve`` and ``tether up`` run one broker per process; tests run many,
on port 0, side by side. So a broker is an object built from explicit settings and an
authenticator, owning its amqtt instance, and reporting the port it really bound.
:func:`run_in_thread` gives synchronous code (paho-based tests, the all-in-one launcher)
a started broker with its own event loop, and a clean shutdown when the block ends.

With ``tls_port`` set the broker has a second listener, TLS with the cloud's server
certificate; ``require_client_cert`` makes it mTLS, where a client's certificate CN is its
identity (see :mod:`broker.hardening`, fix 8). Revocation: ``disconnect_user`` closes an
identity's connections now (the process that also runs the cloud subscribes it to the
cloud's revocations), and every ``recheck_seconds`` connected clients are asked about
again, which is how a broker in another process learns of a revocation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.errors import BrokerError as AmqttBrokerError

from broker.access import Authenticator, CertificateCheck, TopicAccess
from broker.errors import BrokerError, BrokerStartError, BrokerStateError, PortInUse
from broker.hardening import TetherBroker
from broker.plugins import Gatekeeper, plugin_config
from broker.settings import BrokerSettings

__all__ = ["EmbeddedBroker", "run_in_thread"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# amqtt's own shutdown takes milliseconds; past this, connections are dropped (``_shut_down``)
SHUTDOWN_GRACE_SECONDS = 5.0


class EmbeddedBroker:
    """One amqtt broker with Tether's authentication and topic ACL.

    Persistent sessions (clean_session=False) and QoS 1 queueing for disconnected
    clients, retained messages and wills work; all of it lives in memory and is gone
    when the broker stops.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        authenticate: Authenticator,
        check_certificate: CertificateCheck | None = None,
    ) -> None:
        self.settings = settings
        self.access = TopicAccess(settings.topic_scheme, settings.cloud_username)
        self._authenticate = authenticate
        self._check_certificate = check_certificate
        self._broker: TetherBroker | None = None
        self._port: int | None = None
        self._tls_port: int | None = None
        self._recheck_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shutdown_grace_seconds = SHUTDOWN_GRACE_SECONDS

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and start serving; raises :class:`PortInUse` if the port is taken."""
        if self._broker is not None:
            raise BrokerStateError("the broker is already started")
        host, port = self.settings.host, self.settings.port
        cannot = f"the MQTT broker cannot start on {host}:{port}"
        if port:
            _check_port_free(host, port)  # amqtt would log a traceback before failing
        gate = Gatekeeper(
            authenticate=self._authenticate,
            access=self.access,
            check_certificate=self._check_certificate,
        )
        listeners = {"default": ListenerConfig(type=ListenerType.TCP, bind=f"{host}:{port}")}
        settings = self.settings
        if settings.tls_port is not None:
            if settings.tls_port:
                _check_port_free(host, settings.tls_port)
            try:
                listeners["tls"] = ListenerConfig(
                    type=ListenerType.TCP,
                    bind=f"{host}:{settings.tls_port}",
                    ssl=True,
                    certfile=settings.certfile,
                    keyfile=settings.keyfile,
                    cafile=settings.cafile,
                )
            except (OSError, ValueError) as exc:
                raise BrokerStartError(f"{cannot}: TLS files: {exc}") from exc
        config = BrokerConfig(
            listeners=listeners,
            plugins=plugin_config(gate),
            session_expiry_interval=self.settings.session_expiry_seconds,
            timeout_disconnect_delay=0,
        )
        try:
            broker = TetherBroker(
                config,
                access=self.access,
                max_packet_bytes=self.settings.max_packet_bytes,
                connect_timeout=self.settings.connect_timeout_seconds,
                require_client_cert=frozenset({"tls"} if settings.require_client_cert else ()),
                gatekeeper=gate,
            )
            await broker.start()
        except AmqttBrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise BrokerStartError(f"{cannot}: {cause or exc}") from exc
        except Exception as exc:  # plugin loading, bad bind address, ...
            raise BrokerStartError(f"{cannot}: {exc}") from exc
        self._broker = broker
        self._loop = asyncio.get_running_loop()
        try:
            self._port = _bound_port(broker)
            if settings.tls_port is not None:
                self._tls_port = _bound_port(broker, "tls")
        except BrokerStartError:
            await self.stop()
            raise
        if settings.recheck_seconds is not None:
            self._recheck_task = asyncio.create_task(self._recheck_forever(settings.recheck_seconds))
        log.info("MQTT broker serving %s (topic root %s)", self.url, self.settings.topic_root)
        if self._tls_port is not None:
            log.info("MQTT broker serving %s (TLS)", self.tls_url)

    async def stop(self) -> None:
        """Close every connection and stop listening. Safe to call twice."""
        task, self._recheck_task = self._recheck_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        broker, self._broker = self._broker, None
        if broker is not None:
            await _shut_down(broker, self.shutdown_grace_seconds)

    # -- revocation ----------------------------------------------------------------------
    async def disconnect_user(self, username: str) -> int:
        """Close every connection of ``username`` now; how many were closed."""
        if self._broker is None:
            return 0
        return await self._broker.disconnect_user(username)

    def disconnect_user_threadsafe(self, username: str, *, timeout: float = 5.0) -> int:
        """``disconnect_user`` from another thread (a cloud revocation listener)."""
        if self._loop is None or self._broker is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self.disconnect_user(username), self._loop)
        return future.result(timeout)

    async def recheck(self) -> int:
        """Ask the authenticator again about every connected client; close the refused."""
        if self._broker is None:
            return 0
        return await self._broker.recheck()

    async def _recheck_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.recheck()
            except Exception:  # keep checking whatever one round met
                log.exception("re-checking connected clients failed")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- where it listens ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._broker is not None

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The port really bound (useful with ``port=0``)."""
        if self._port is None:
            raise BrokerStateError("the broker has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_port(self) -> int:
        """The TLS listener's port really bound."""
        if self._tls_port is None:
            raise BrokerStateError("the broker has no TLS listener (or is not started)")
        return self._tls_port

    @property
    def tls_url(self) -> str:
        return f"mqtts://{self.host}:{self.tls_port}"


def _check_port_free(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BrokerStartError(f"cannot resolve broker host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio will
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise BrokerStartError(f"cannot bind {host}:{port}: {exc.strerror}") from exc


def _bound_port(broker: TetherBroker, listener: str = "default") -> int:
    server = broker._servers.get(listener)  # amqtt exposes no public accessor
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise BrokerStartError("the MQTT broker started but reports no listening socket")


async def _shut_down(broker: TetherBroker, grace: float) -> None:
    """amqtt's shutdown, which closes each session and its connection in turn; if that has
    not finished within ``grace`` seconds, the listeners are closed and every connection
    dropped (``TetherBroker.abort_connections``), and the shutdown is cancelled, and waited
    for ``grace`` seconds more at most.

    Without a bound, one shutdown that did not return (seen once in CI, not reproduced) kept
    the broker's port and loop, and every broker started after it in that process failed.
    """
    shutdown = asyncio.ensure_future(broker.shutdown())
    done, _ = await asyncio.wait({shutdown}, timeout=grace)
    if shutdown in done:
        shutdown.result()  # its error, if it raised
        return
    log.warning("the MQTT broker did not shut down within %ss: dropping its connections", grace)
    broker.abort_connections()
    shutdown.cancel()
    done, _ = await asyncio.wait({shutdown}, timeout=grace)
    if shutdown in done:
        if not shutdown.cancelled() and shutdown.exception() is not None:
            log.warning("the MQTT broker's cancelled shutdown failed: %s", shutdown.exception())
        return
    # a shutdown that swallows its cancellation must not hold the stop (nor Ctrl-C) for ever
    log.error("the MQTT broker's shutdown ignored its cancellation for %ss; leaving it", grace)


# -- in a thread -------------------------------------------------------------------------
@contextmanager
def run_in_thread(
    settings: BrokerSettings,
    authenticate: Authenticator,
    *,
    check_certificate: CertificateCheck | None = None,
    timeout: float = 10.0,
) -> Iterator[EmbeddedBroker]:
    """Run a broker on its own event loop in a daemon thread; yield it once started.

    Leaving the block stops the broker, cancels what is left on its loop and joins the
    thread. Errors of ``start()`` (e.g. :class:`PortInUse`) are raised here.
    """
    broker = EmbeddedBroker(settings, authenticate=authenticate, check_certificate=check_certificate)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="tether-broker", daemon=True)
    thread.start()
    try:
        _call(loop, broker.start(), timeout, what="start")
        yield broker
    finally:
        try:
            if broker.started:
                _call(loop, broker.stop(), timeout, what="stop")
            _call(loop, _cancel_leftovers(broker.shutdown_grace_seconds), timeout,
                  what="clean up")
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def _call(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float, *, what: str
) -> T:
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        error = BrokerStartError if what == "start" else BrokerError
        raise error(f"the MQTT broker did not {what} within {timeout}s") from exc


async def _cancel_leftovers(grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Cancel every other task on the loop and wait for them, ``grace`` seconds at most: one
    that swallows its cancellation is left to the loop's closing."""
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    if not leftovers:
        return
    done, pending = await asyncio.wait(leftovers, timeout=grace)
    for task in done:  # retrieved, as gather would: their errors are not the stop's business
        if not task.cancelled():
            task.exception()
    if pending:
        log.error("%d of the MQTT broker's tasks ignored their cancellation; leaving them",
                  len(pending))
