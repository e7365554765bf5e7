"""The fleet: N simulated nodes on one event loop, their connections and their timers.

Each node gets a task that keeps it connected the way ``edge_runtime.sync.MqttLink``
does: client id ``tether-edge.NS.NODE``, username ``NS/NODE``, a persistent session,
keepalive 30 s, the retained ``status`` ``online: false`` as its last will, the agent's
subscriptions under its own root sent before its first publish, and after any failure or
lost connection the agent's own ``Backoff`` (0.5 s doubling to 30 s, equal jitter, reset
on a good connect). So a broker restart is followed by the same reconnect storm a real
fleet makes.

One ticker task runs every node's timers and the agent's link watchdog
(``edge_runtime.liveness.Liveness``: a probe, here a PINGREQ, after keepalive/2 of
silence, the connection dropped if nothing answers within another keepalive/2), and
sends PINGREQ on connections idle for a keepalive; 10,000 timers per node would cost
more than the traffic they guard. A connect that times out or finds no route is retried
within ``reconnect_path_seconds``, as the agent does.

At most ``connect_concurrency`` connection attempts (TCP connect to CONNACK) are in
progress at once: Mosquitto listens with a backlog of 100, and 10,000 simultaneous SYNs
would measure the kernel's SYN retransmission (1 s, 3 s, ...) rather than Tether.
"""

from __future__ import annotations

import asyncio
import platform
import random
import socket
import time
from collections.abc import Callable

from edge_runtime.liveness import Liveness, Verdict, path_down
from edge_runtime.settings import EdgeSettings
from edge_runtime.sync import Backoff
from edge_runtime.transport import QOS, RESOURCES_FILTER, SUBSCRIBED
from launcher.fleet.catalog import AppCatalog
from launcher.fleet.mqttcodec import Will
from launcher.fleet.mqttlite import Connection, MqttError, open_connection
from launcher.fleet.nodes import SimNode
from launcher.fleet.shared import FleetStats, Timers
from schemas.names import node_client_id, node_identity
from schemas.shadow import JSONObject
from schemas.topics import Suffix, TopicScheme

TICK_SECONDS = 0.25
# Nodes ticked before the loop reads its sockets again: one pass over 10,000 nodes held the
# loop ~20 ms (py-spy: 12 % of the simulator's samples, at four passes a second), and the
# replies waiting meanwhile were measured as the cloud's latency (p99 of phase 4).
TICK_SLICE = 500
Progress = Callable[[int], None]
_AGENT = EdgeSettings.model_fields


def simulated_facts() -> JSONObject:
    """``reported.node`` as a native agent on this machine reports it (hostname per node)."""
    uname = platform.uname()
    return {"os": uname.system.lower(), "arch": uname.machine, "kernel": uname.release,
            "python": platform.python_version(), "backend": "native", "simulated": True}


NODESTATS: JSONObject = {"cpu": 3.5, "memory": {"total": 8_201_367_552, "used": 2_101_395_456},
                         "disk": {"total": 105_088_212_992, "used": 33_957_384_192}}


class Fleet:
    """Simulated nodes ``names`` of ``namespace``, connecting to one broker."""

    def __init__(
        self, names: list[str], *, namespace: str, host: str, port: int,
        topics: TopicScheme | None = None, timers: Timers | None = None,
        keepalive: int = _AGENT["keepalive_seconds"].default,
        reconnect_min: float = _AGENT["reconnect_min_seconds"].default,
        reconnect_max: float = _AGENT["reconnect_max_seconds"].default,
        connect_concurrency: int = 100, connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sock_factory: Callable[[], socket.socket] | None = None,
    ) -> None:
        self.namespace, self.host, self.port = namespace, host, port
        self.stats, self.catalog, self.clock = FleetStats(), AppCatalog(), clock
        self._keepalive, self._connect_timeout = keepalive, connect_timeout
        self._reconnect = (reconnect_min, reconnect_max)
        self._sock_factory = sock_factory  # the nodes' sockets, e.g. in a network namespace
        self._connecting = asyncio.Semaphore(connect_concurrency)
        facts, topics, timers = simulated_facts(), topics or TopicScheme(), timers or Timers()
        self.nodes = [
            SimNode(name, root=topics.node_root(namespace, name), facts=facts, nodestats=NODESTATS,
                    stats=self.stats, catalog=self.catalog, timers=timers, clock=clock)
            for name in names
        ]
        self._by_name = {node.name: node for node in self.nodes}
        self._links: dict[str, Connection] = {}
        self._watchdogs: dict[str, Liveness] = {}
        self._path_retry = _AGENT["reconnect_path_seconds"].default
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Every node starts connecting now; the ticker starts."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep_connected(node)) for node in self.nodes]
        self._tasks.append(loop.create_task(self._tick()))

    async def stop(self) -> None:
        """As the agent stops: the retained offline status, then DISCONNECT."""
        self._stopping = True
        links = list(self._links.items())
        for name, link in links:
            node = self._by_name.get(name)
            if node is not None:
                link.publish(f"{node.root}/{Suffix.STATUS.value}", node.status_payload(online=False),
                             retain=True)
        await asyncio.gather(*(link.close() for _, link in links), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- waiting ---------------------------------------------------------------------------
    def reached(self, mark: str) -> int:
        """How many nodes reached ``mark`` (e.g. ``reported``, ``running:app@1``)."""
        return self.stats.marks[mark]

    async def wait_for(
        self, mark: str, *, timeout: float, progress: Progress | None = None,
        count: int | None = None,
    ) -> bool:
        """Until ``count`` (default: every) node reached ``mark``; False at ``timeout``."""
        target = len(self.nodes) if count is None else count
        deadline = self.clock() + timeout
        while True:
            done = self.reached(mark)
            if progress is not None:
                progress(done)
            if done >= target:
                return True
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(0.1)

    def fail(self, app: str, version: str, nodes: list[str] | None = None) -> None:
        """Make ``version`` of ``app`` crash on ``nodes`` (every node if None) when run."""
        for node in self.nodes if nodes is None else [self._by_name[name] for name in nodes]:
            node.apps.fail(app, version)

    @property
    def online(self) -> int:
        return len(self._links)

    # -- one node's connection -------------------------------------------------------------
    async def _keep_connected(self, node: SimNode) -> None:
        backoff = Backoff(*self._reconnect)
        namespace = self.namespace
        filters = [(f"{node.root}/{s.value}", QOS) for s in SUBSCRIBED]
        filters.append((f"{node.root}/{RESOURCES_FILTER}", QOS))
        loop = asyncio.get_running_loop()
        while not self._stopping:
            will = Will(f"{node.root}/{Suffix.STATUS.value}", node.status_payload(online=False),
                        qos=QOS, retain=True)
            try:
                async with self._connecting:
                    link = await open_connection(
                        self.host, self.port, client_id=node_client_id(namespace, node.name),
                        username=node_identity(namespace, node.name), will=will,
                        keepalive=self._keepalive, clean_session=False,
                        timeout=self._connect_timeout, sock_factory=self._sock_factory)
            except MqttError as exc:
                self.stats.connect_failures += 1
                cause = exc.__cause__
                if isinstance(cause, OSError) and path_down(cause):  # the network, not the broker
                    await asyncio.sleep(self._path_retry * (0.5 + random.random() / 2))
                else:
                    await asyncio.sleep(backoff.next())
                continue
            self.stats.connects += 1
            # as the agent: subscribe, then the sync's first publishes, then what the
            # session kept for the node (it arrived behind the CONNACK)
            link.subscribe(filters).add_done_callback(_refused_ends(link))
            backoff.reset()
            self._links[node.name] = link
            watchdog = self._watchdogs[node.name] = Liveness(self._keepalive)
            watchdog.opened(link.last_read)
            watchdog.established(link.last_read)
            node.connected(link)
            ended: asyncio.Future[str] = loop.create_future()
            link.start(node.handle, _ends(ended))
            await ended
            self._links.pop(node.name, None)
            node.disconnected()
            if not self._stopping:
                self.stats.disconnects += 1
                await asyncio.sleep(backoff.next())

    async def _tick(self) -> None:
        links = self._links
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = self.clock()
            idle_since = time.monotonic() - self._keepalive
            mono = time.monotonic()
            for index, node in enumerate(self.nodes):
                if index and index % TICK_SLICE == 0:  # let replies in: see TICK_SLICE
                    await asyncio.sleep(0)
                node.tick(now)
                link = links.get(node.name)
                if link is None:
                    continue
                watchdog = self._watchdogs[node.name]
                if link.last_read > mono - watchdog.silence_limit:
                    watchdog.heard(link.last_read)
                verdict = watchdog.check(mono)
                if verdict is Verdict.DEAD:
                    self.stats.dead_links += 1
                    link.abort("nothing heard from the broker: the link is dead")
                elif verdict is Verdict.PROBE or link.last_write < idle_since:
                    link.ping()


def _ends(ended: asyncio.Future[str]) -> Callable[[str], None]:
    """The close handler of a connection: resolves ``ended`` with the reason, once."""

    def close(reason: str) -> None:
        if not ended.done():
            ended.set_result(reason)

    return close


def _refused_ends(link: Connection) -> Callable[[asyncio.Future[tuple[int, ...]]], None]:
    """A SUBACK callback: a refused subscription ends the connection (and so is retried)."""

    def check(granted: asyncio.Future[tuple[int, ...]]) -> None:
        if not granted.cancelled() and 0x80 in granted.result():
            link.abort("the broker refused a subscription")

    return check
