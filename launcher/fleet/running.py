"""``tether bench fleet``: start what is needed, run the phases, gather the figures.

Unless given URLs, the bench starts its own: a private Mosquitto on a free loopback
port, a scratch PostgreSQL database when given a server (else SQLite in a temp dir), and
``tether cloud serve`` (one or more replicas). Then, each phase timed:

1. create the nodes (bulk endpoint, or one by one);
2. connect: every simulated node connects, fetches its document, and has its first
   report accepted;
3. rollout: one new app whose selector matches every node; per node, when its desired
   apps held the app, when it fetched it, and when its report of it Running was
   accepted; optionally a fault mid-rollout (``broker-restart``, ``replica-kill``); then
   the rollout status endpoint, timed and checked against the fleet;
4. sustained updates: a few nodes report a changing property, one update in flight each.

The cloud's CPU time over phases 2-4 is divided by the node messages it received.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from launcher.fleet.cloudrest import CloudRest
from launcher.fleet.fleet import Fleet
from launcher.fleet.results import (
    MB,
    CloudUsage,
    ConnectPhase,
    CreatePhase,
    FleetResult,
    RolloutPhase,
    UpdatePhase,
    spread,
)
from launcher.fleet.services import CloudProcess, ScratchDatabase, ServiceError, sample_process
from launcher.mosquitto import PrivateMosquitto, raise_nofile

FAULTS = ("broker-restart", "replica-kill")
FLEET_LABEL = "tether.io/fleet"
SHARE_GROUP = "tether-cloud"
# Mosquitto queues at most 1000 QoS 1 messages per client beyond those in flight, and
# drops the rest: the cloud bridge's one subscription receives every node's requests, and
# 10,000 nodes connecting or reporting at once put far more than that in its queue. A
# million (about 300 MB of broker memory in the worst case) is never reached by a 10k
# fleet, whose nodes have at most a few requests outstanding each. In flight: 100, as in
# the production configuration (``tether broker mosquitto-config``).
MAX_QUEUED_MESSAGES = 1_000_000
MAX_INFLIGHT_MESSAGES = 100


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None: ...
    def update(self, done: int) -> None: ...


@dataclass(frozen=True)
class FleetOptions:
    nodes: int = 500
    mqtt_url: str | None = None
    cloud_url: str | None = None
    token: str | None = None
    database_url: str | None = None
    replicas: int = 1
    update_nodes: int = 10
    update_seconds: float = 10.0
    fault: str | None = None
    timeout: float = 120.0  # per phase
    connect_concurrency: int = 100


def run_fleet_bench(options: FleetOptions, progress: Progress | None = None) -> FleetResult:
    """Run every phase; ``ServiceError`` if what the bench needs cannot be started."""
    _check(options)
    raise_nofile(options.nodes + 1024)  # a socket per node
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tether-fleet-") as scratch:
        mosquitto: PrivateMosquitto | None = None
        mqtt_url = options.mqtt_url
        if mqtt_url is None:
            mosquitto = stack.enter_context(PrivateMosquitto(
                nofile=options.nodes + 1024, max_connections=-1,
                max_queued_messages=MAX_QUEUED_MESSAGES, max_inflight_messages=MAX_INFLIGHT_MESSAGES))
            mqtt_url = mosquitto.url
        clouds: list[CloudProcess] = []
        database = "given cloud"
        if options.cloud_url is None:
            database_url, database = None, "SQLite"
            if options.database_url is not None:
                scratch_db = ScratchDatabase(options.database_url)
                scratch_db.create()
                stack.callback(scratch_db.drop)
                database_url, database = scratch_db.url, f"PostgreSQL ({scratch_db.name})"
            for index in range(options.replicas):
                cloud = CloudProcess(
                    data_dir=Path(scratch) / "cloud", mqtt_url=mqtt_url,
                    log_path=Path(scratch) / f"cloud-{index}.log", database_url=database_url,
                    share_group=SHARE_GROUP if options.replicas > 1 else None)
                stack.callback(cloud.stop)
                cloud.start()
                clouds.append(cloud)
        url = options.cloud_url or clouds[0].url
        token = options.token or clouds[0].admin_token()
        result = FleetResult(nodes=options.nodes, namespace=f"fleet-{uuid.uuid4().hex[:8]}",
                             broker="private mosquitto" if mosquitto else mqtt_url,
                             database=database, replicas=len(clouds) or 1)
        bench = _Bench(options, result, mqtt_url, url, token, clouds, mosquitto, progress)
        asyncio.run(bench.run())
        for cloud in clouds:
            if cloud.process is not None and cloud.process.poll() is not None and cloud is not bench.killed:
                result.failures.append(f"cloud replica {cloud.pid} exited:\n{cloud.log_tail()}")
        return result


def _check(options: FleetOptions) -> None:
    if options.fault is not None and options.fault not in FAULTS:
        raise ServiceError(f"--fault must be one of {', '.join(FAULTS)}")
    if options.fault == "broker-restart" and options.mqtt_url is not None:
        raise ServiceError("--fault broker-restart restarts the bench's own broker: drop --mqtt-url")
    if options.fault == "replica-kill" and (options.replicas < 2 or options.cloud_url):
        raise ServiceError("--fault replica-kill needs --replicas 2 or more (started by the bench)")
    if options.replicas > 1 and not (options.database_url or "").startswith("postgres"):
        raise ServiceError("--replicas > 1 needs --database-url postgresql://... (one shared database)")
    if options.cloud_url is not None and options.token is None:
        raise ServiceError("--cloud-url needs --token (an admin token of that cloud)")


class _Bench:
    """The phases, on one event loop, against services already running."""

    def __init__(
        self, options: FleetOptions, result: FleetResult, mqtt_url: str, url: str, token: str,
        clouds: list[CloudProcess], mosquitto: PrivateMosquitto | None, progress: Progress | None,
    ) -> None:
        self.options, self.result, self.progress = options, result, progress
        self.mqtt_url, self.url, self.token = mqtt_url, url, token
        self.clouds, self.mosquitto = clouds, mosquitto
        self.killed: CloudProcess | None = None
        self._broker_pid: int | None = None
        self.names = [f"n{index:05d}" for index in range(options.nodes)]

    def _phase(self, name: str, total: int) -> Callable[[int], None] | None:
        if self.progress is None:
            return None
        self.progress.phase(name, total)
        return self.progress.update

    async def run(self) -> None:
        result, options = self.result, self.options
        rests = [CloudRest(cloud.url, self.token) for cloud in self.clouds] or [
            CloudRest(self.url, self.token)]
        rest = rests[0]
        parts = urlsplit(self.mqtt_url)
        fleet = Fleet(self.names, namespace=result.namespace, host=parts.hostname or "127.0.0.1",
                      port=parts.port or 1883, connect_concurrency=options.connect_concurrency)
        try:
            await rest.create_namespace(result.namespace)
            labels = {FLEET_LABEL: result.namespace}
            created = await rest.create_nodes(result.namespace, self.names, labels=labels,
                                              progress=self._phase("create nodes", options.nodes))
            result.create = CreatePhase(round(created.seconds, 3), created.path, created.created,
                                        created.existing, created.failed)
            result.failures += [f"node not created: {error}" for error in created.errors]
            before, side_before = self._usage(), self._side_cpu()
            messages_before = await _messages(rests)
            sent_before = sum(fleet.stats.sent.values())
            await self._connect(fleet)
            after_connect = self._usage()
            await self._rollout(fleet, rest)
            await self._updates(fleet)
            end, side_end = self._usage(), self._side_cpu()
            messages_after = await _messages(rests)
            result.side_cpu_seconds = {name: _spent(side_before.get(name), value)
                                       for name, value in side_end.items()}
            result.simulator_rss_mb = round(sample_process(os.getpid()).rss_bytes / MB, 1)
            sent = sum(fleet.stats.sent.values()) - sent_before
            self._cloud_usage(before, after_connect, end, messages_before, messages_after, sent)
        finally:
            await fleet.stop()
            for client in rests:
                await client.aclose()
            stats = fleet.stats
            result.traffic = {
                "connects": stats.connects, "connect_failures": stats.connect_failures,
                "disconnects": stats.disconnects, "sent": dict(stats.sent),
                "received": dict(stats.received), "rejected": dict(stats.rejected),
                "resent": dict(stats.resent),
            }

    # -- phases ----------------------------------------------------------------------------
    async def _connect(self, fleet: Fleet) -> None:
        started = fleet.clock()
        fleet.start()
        done = await fleet.wait_for("reported", timeout=self.options.timeout,
                                    progress=self._phase("connect", len(fleet.nodes)))
        timelines = {mark: [n.marks[mark] - started for n in fleet.nodes if mark in n.marks]
                     for mark in ("connected", "reported")}
        timeline = timelines["reported"]
        self.result.connect = ConnectPhase(
            round(max(timeline), 3) if done and timeline else None, len(timeline),
            spread(timeline), timelines)
        if not done:
            self._missing(fleet, "reported", "never had a first report accepted")

    async def _rollout(self, fleet: Fleet, rest: CloudRest) -> None:
        namespace, options = self.result.namespace, self.options
        app = {"name": "fleet-app", "selector": f"{FLEET_LABEL}={namespace}",
               "services": [{"name": "main", "command": ["sleep", "86400"]}]}
        started = fleet.clock()
        post_seconds, created = await rest.create_app(namespace, app)
        version = str(created.get("version"))
        target = f"fleet-app@{version}"
        fault: asyncio.Task[float] | None = None
        if options.fault is not None:
            fault = asyncio.get_running_loop().create_task(self._fault(fleet, f"running:{target}", started))
        done = await fleet.wait_for(f"running:{target}", timeout=options.timeout,
                                    progress=self._phase("rollout", len(fleet.nodes)))
        fault_at = await fault if fault is not None else None

        def times(mark: str) -> list[float]:
            return [n.marks[mark] - started for n in fleet.nodes if mark in n.marks]

        def everyone(samples: list[float]) -> float | None:
            return round(max(samples), 3) if len(samples) == len(fleet.nodes) else None

        timelines = {mark: times(f"{mark}:{target}") for mark in ("desired", "fetched", "running")}
        timeline = timelines["running"]
        rollout = RolloutPhase(
            "fleet-app", version, round(post_seconds, 4), everyone(timelines["desired"]),
            everyone(timelines["fetched"]), everyone(timeline), len(timeline),
            spread(timeline), fault=options.fault,
            fault_at=None if fault_at is None else round(fault_at, 3), timelines=timelines)
        self.result.rollout = rollout
        if not done:
            self._missing(fleet, f"running:{target}", f"never reported {target} Running")
            return
        status_seconds, status = await rest.rollout(namespace, "fleet-app")
        rollout.status_seconds = round(status_seconds, 4)
        rollout.status_counts = dict(status.get("counts", {}))
        if rollout.status_counts.get("running") != len(fleet.nodes):
            self.result.failures.append(
                f"the cloud's rollout status disagrees with the fleet: {rollout.status_counts}")

    async def _fault(self, fleet: Fleet, mark: str, started: float) -> float:
        """Mid-rollout: once a quarter of the nodes converged, or 2 s after the POST."""
        quarter = max(1, len(fleet.nodes) // 4)
        while fleet.reached(mark) < quarter and fleet.clock() - started < 2.0:
            await asyncio.sleep(0.05)
        at = fleet.clock() - started
        if self.options.fault == "broker-restart" and self.mosquitto is not None:
            await asyncio.to_thread(self.mosquitto.restart)
        elif self.options.fault == "replica-kill":
            self.killed = self.clouds[-1]
            self.killed.kill()
        return at

    async def _updates(self, fleet: Fleet) -> None:
        options = self.options
        count = min(options.update_nodes, len(fleet.nodes))
        if count == 0 or options.update_seconds <= 0:
            return
        latencies: list[float] = []
        rejected = 0
        progress = self._phase("updates", int(options.update_seconds * 10))
        deadline = fleet.clock() + options.update_seconds
        started = fleet.clock()

        async def reporter(index: int) -> None:
            nonlocal rejected
            node, seq = fleet.nodes[index], 0
            while fleet.clock() < deadline:
                seq += 1
                try:
                    latency = await asyncio.wait_for(node.set_property("seq", seq), options.timeout)
                except TimeoutError:
                    latency = None
                if latency is None:
                    rejected += 1
                else:
                    latencies.append(latency)

        async def ticking() -> None:
            while fleet.clock() < deadline and progress is not None:
                progress(int((fleet.clock() - started) * 10))
                await asyncio.sleep(0.1)

        await asyncio.gather(ticking(), *(reporter(index) for index in range(count)))
        seconds = fleet.clock() - started
        if progress is not None:
            progress(int(options.update_seconds * 10))
        self.result.updates = UpdatePhase(count, round(seconds, 3), len(latencies), rejected,
                                          round(len(latencies) / seconds, 1),
                                          spread(latencies, scale=1000))

    # -- the cloud's usage -----------------------------------------------------------------
    def _side_cpu(self) -> dict[str, float | None]:
        """CPU seconds so far of the simulator and of the bench's broker (None: not ours,
        or restarted since, which resets its count)."""
        own = resource.getrusage(resource.RUSAGE_SELF)
        side: dict[str, float | None] = {"simulator": own.ru_utime + own.ru_stime}
        if self.mosquitto is not None and self.mosquitto.process is not None:
            pid = self.mosquitto.process.pid
            if self._broker_pid in (None, pid):
                self._broker_pid = pid
                side["broker"] = sample_process(pid).cpu_seconds
            else:
                side["broker"] = None
        return side

    def _usage(self) -> list[Any]:
        return [sample_process(cloud.pid) if cloud is not self.killed else None
                for cloud in self.clouds]

    def _cloud_usage(
        self, before: list[Any], after_connect: list[Any], end: list[Any],
        messages_before: float | None, messages_after: float | None, sent: int,
    ) -> None:
        if not self.clouds:
            return
        cpu = sum(e.cpu_seconds - b.cpu_seconds for b, e in zip(before, end, strict=True)
                  if b is not None and e is not None)
        if messages_before is not None and messages_after is not None and self.killed is None:
            messages, source = int(messages_after - messages_before), "/metrics"
        else:
            messages, source = sent, "simulator"
        self.result.cloud = CloudUsage(
            pids=[cloud.pid for cloud in self.clouds],
            rss_after_connect_mb=[round(s.rss_bytes / MB, 1) for s in after_connect if s is not None],
            rss_end_mb=[round(s.rss_bytes / MB, 1) for s in end if s is not None],
            cpu_seconds=round(cpu, 2), messages_in=messages, messages_source=source,
            cpu_ms_per_message=round(cpu * 1000 / messages, 4) if messages else None)

    def _missing(self, fleet: Fleet, mark: str, what: str) -> None:
        missing = [node.name for node in fleet.nodes if mark not in node.marks]
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        self.result.failures.append(f"{len(missing)} node(s) {what} within "
                                    f"{self.options.timeout:g} s: {shown}")


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


async def _messages(rests: list[CloudRest]) -> float | None:
    counts = [await rest.messages_in() for rest in rests]
    return None if any(count is None for count in counts) else sum(c for c in counts if c is not None)
