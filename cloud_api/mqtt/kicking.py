"""Cutting a revoked node off a broker the cloud cannot command (Mosquitto, EMQX...).

A CRL (``tether broker crl-sync``) makes Mosquitto refuse a revoked certificate at the
next handshake, but a node that stays connected never has one. MQTT gives the cloud a
lever anyway: a broker closes a client's connection when another connects with the same
client id (session takeover, MQTT 3.1.1 §3.1.4). Nodes connect as
``schemas.names.node_client_id``, so on each revocation ``SessionKicker`` connects once
with that id and a clean session, as the bridge user, and leaves: the node is
disconnected (its will says it went offline) and its queued session is dropped.

If the node reconnects before the broker's CRL lists it, its ``status`` says so and the
cloud kicks again (``ShadowServer``), until the CRL shuts it out. The embedded broker
needs none of this (it disconnects revoked nodes itself) and refuses the takeover, which
is harmless. Kicks run on a small pool of threads: a revocation never waits on a broker,
and revoking a thousand nodes at once does not open a thousand connections at once.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud_api.mqtt.paho_reading import configure_login
from cloud_api.settings import CloudSettings, mqtt_endpoint
from schemas.names import node_client_id, parse_node_identity

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10.0
MAX_CONCURRENT_KICKS = 4


class SessionKicker:
    """A ``Revocations`` listener: take over the revoked node's MQTT session, then leave."""

    def __init__(
        self, settings: CloudSettings, *, password: str, timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self._host, self._port, self._tls = mqtt_endpoint(settings.mqtt_url)
        self._settings = settings
        self._timeout = timeout
        self._username, self._password = settings.mqtt_username, password
        self._pool = ThreadPoolExecutor(MAX_CONCURRENT_KICKS, thread_name_prefix="tether-kick")

    def __call__(self, identity: str) -> Future[bool] | None:
        """Kick ``NS/NODE`` in the background; its future, or None for a bad identity."""
        parsed = parse_node_identity(identity)
        if parsed is None:
            return None
        return self._pool.submit(self.kick, node_client_id(*parsed))

    def close(self) -> None:
        """Let the kicks under way finish; start no more."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def kick(self, client_id: str) -> bool:
        """Connect as ``client_id`` with a clean session and disconnect; whether it worked."""
        answered, gone = threading.Event(), threading.Event()
        accepted: list[bool] = []

        def on_connect(client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object) -> None:
            accepted.append(not reason.is_failure)
            answered.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True, protocol=mqtt.MQTTv311)
        configure_login(client, self._settings, password=self._password, tls=self._tls)
        client.on_connect = on_connect
        client.on_disconnect = lambda *_: gone.set()
        try:
            client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            log.warning("cannot take over %s's session at %s:%s: %s",
                        client_id, self._host, self._port, exc)
            _close_socket(client)
            return False
        client.loop_start()
        try:
            if not answered.wait(self._timeout):
                log.warning("no CONNACK taking over %s's session", client_id)
                return False
            if accepted[0]:
                log.info("took over the MQTT session of revoked client %s", client_id)
            else:  # the embedded broker: it disconnected the node itself
                log.debug("the broker refused to hand over %s's session", client_id)
            return accepted[0]
        finally:
            client.disconnect()
            gone.wait(self._timeout)  # the network thread closes the socket, then says so
            client.loop_stop()
            _close_socket(client)


def _close_socket(client: mqtt.Client) -> None:
    """Close what paho left open (a broker that never answered): no socket outlives a kick."""
    sock = client.socket()
    if sock is not None:
        sock.close()
