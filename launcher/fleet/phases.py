"""The phases of ``tether bench fleet``, on one event loop, against services running.

1. create the nodes (bulk endpoint, or one by one);
2. connect: every simulated node connects, fetches its document, and has its first
   report accepted;
3. rollout: one new app whose selector matches every node; per node, when its desired
   apps held the app, when it fetched it, and when its report of it Running was
   accepted; optionally a fault mid-rollout (``broker-restart``, ``replica-kill``, or
   ``partition``: every packet of the fleet's namespace dropped for a while); then
   the rollout status endpoint, timed and checked against the fleet;
4. sustained updates: a few nodes report a changing property, one update in flight each.

The cloud's CPU time over phases 2-4 is divided by the node messages it received: those
the fleet published (the broker's queue is sized never to drop one), which under
overload is more than the bridge's ``/metrics`` count of messages handled, since it
refuses the excess with 429 without counting it. A node that does not get through a
phase within the timeout is a line in ``failures``; the next phases still run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
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
from launcher.fleet.services import (
    CloudProcess,
    MachineSample,
    ProcessSample,
    ScratchDatabase,
    sample_machine,
    sample_process,
)
from launcher.mosquitto import PrivateMosquitto

if TYPE_CHECKING:
    from launcher.chaos.netns import Namespace
    from launcher.chaos.relay import DelayRelay
    from launcher.fleet.running import FleetOptions, Progress

FLEET_LABEL = "tether.io/fleet"
UPDATE_GRACE_SECONDS = 5.0  # an update of phase 4 still unanswered this long after its end
REST_TIMEOUT_SECONDS = 300.0  # an overloaded cloud was seen taking 56 s to create an app


class Phases:
    """The phases, on one event loop, against services already running."""

    def __init__(
        self, options: FleetOptions, result: FleetResult, mqtt_url: str, url: str, token: str,
        clouds: list[CloudProcess], mosquitto: PrivateMosquitto | None, progress: Progress | None,
        *, net: tuple[Namespace, DelayRelay] | None = None, database: ScratchDatabase | None = None,
    ) -> None:
        self.options, self.result, self.progress = options, result, progress
        self.mqtt_url, self.url, self.token = mqtt_url, url, token
        self.clouds, self.mosquitto = clouds, mosquitto
        self.net = net  # the fleet's namespace and its relay to the broker (network faults)
        self.database = database  # the bench's own PostgreSQL database, if any
        self.killed: CloudProcess | None = None
        self._broker_pid: int | None = None
        self._at_kill: ProcessSample | None = None
        self.names = [f"n{index:05d}" for index in range(options.nodes)]

    def _phase(self, name: str, total: int) -> Callable[[int], None] | None:
        if self.progress is None:
            return None
        self.progress.phase(name, total)
        return self.progress.update

    async def run(self) -> None:
        result, options = self.result, self.options
        rests = [CloudRest(cloud.url, self.token, timeout=REST_TIMEOUT_SECONDS)
                 for cloud in self.clouds] or [CloudRest(self.url, self.token, timeout=REST_TIMEOUT_SECONDS)]
        rest = rests[0]
        parts = urlsplit(self.mqtt_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
        sock_factory = None
        if self.net is not None:  # every node's socket in the namespace, through the relay
            namespace, relay = self.net
            host, port, sock_factory = namespace.host_address, relay.port, namespace.socket
        fleet = Fleet(self.names, namespace=result.namespace, host=host, port=port,
                      connect_concurrency=options.connect_concurrency, sock_factory=sock_factory)
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
            _settle_heap()
            await self._connect(fleet)
            after_connect = self._usage()
            _settle_heap()
            await self._rollout(fleet, rest)
            _settle_heap()
            await self._updates(fleet)
            end, side_end = self._usage(), self._side_cpu()
            messages_after = await _messages(rests)
            result.side_cpu_seconds = {name: _spent(side_before.get(name), value)
                                       for name, value in side_end.items()}
            result.simulator_rss_mb = round(sample_process(os.getpid()).rss_bytes / MB, 1)
            sent = sum(fleet.stats.sent.values()) - sent_before
            self._cloud_usage(before, after_connect, end, messages_before, messages_after, sent)
        finally:
            gc.unfreeze()  # collected as usual again (the bench may run inside a longer process)
            await fleet.stop()
            for client in rests:
                await client.aclose()
            stats = fleet.stats
            result.traffic = {
                "connects": stats.connects, "connect_failures": stats.connect_failures,
                "disconnects": stats.disconnects, "dead_links": stats.dead_links,
                "sent": dict(stats.sent),
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
        if options.fault == "partition" and self.net is not None:
            # the whole rollout is published while the fleet hears nothing
            await asyncio.to_thread(self.net[0].blackhole)
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
        status_seconds, status = await rest.rollout(namespace, "fleet-app")
        rollout.status_seconds = round(status_seconds, 4)
        rollout.status_counts = dict(status.get("counts", {}))
        if done and rollout.status_counts.get("running") != len(fleet.nodes):
            self.result.failures.append(
                f"the cloud's rollout status disagrees with the fleet: {rollout.status_counts}")

    async def _fault(self, fleet: Fleet, mark: str, started: float) -> float:
        """Mid-rollout: once a quarter of the nodes converged, or 2 s after the POST. A
        partition began before the POST; it ends ``partition_seconds`` after."""
        if self.options.fault == "partition" and self.net is not None:
            await asyncio.sleep(self.options.partition_seconds)
            await asyncio.to_thread(self.net[0].heal)
            return 0.0
        quarter = max(1, len(fleet.nodes) // 4)
        while fleet.reached(mark) < quarter and fleet.clock() - started < 2.0:
            await asyncio.sleep(0.05)
        at = fleet.clock() - started
        if self.options.fault == "broker-restart" and self.mosquitto is not None:
            await asyncio.to_thread(self.mosquitto.restart)
        elif self.options.fault == "replica-kill":
            self.killed = self.clouds[-1]
            self._at_kill = sample_process(self.killed.pid)  # its CPU counts until it dies
            self.killed.kill()
        return at

    async def _updates(self, fleet: Fleet) -> None:
        options = self.options
        count = min(options.update_nodes, len(fleet.nodes))
        if count == 0 or options.update_seconds <= 0:
            return
        latencies: list[float] = []
        outcomes = {"rejected": 0, "unanswered": 0}
        progress = self._phase("updates", int(options.update_seconds * 10))
        load_before = await asyncio.to_thread(self._load)
        started = fleet.clock()
        deadline = started + options.update_seconds

        async def reporter(index: int) -> None:
            node, seq = fleet.nodes[index], 0
            while fleet.clock() < deadline:
                seq += 1
                patience = deadline + UPDATE_GRACE_SECONDS - fleet.clock()
                try:
                    latency = await asyncio.wait_for(node.set_property("seq", seq), patience)
                except TimeoutError:
                    outcomes["unanswered"] += 1
                    return
                if latency is None:
                    outcomes["rejected"] += 1
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
        load_after = await asyncio.to_thread(self._load)
        updates = self.result.updates = UpdatePhase(
            count, round(seconds, 3), len(latencies), outcomes["rejected"], outcomes["unanswered"],
            round(len(latencies) / seconds, 1), spread(latencies, scale=1000))
        if latencies:
            updates.cpu_ms_per_update = {
                name: None if spent is None else round(spent * 1000 / len(latencies), 4)
                for name, spent in _load_spent(load_before, load_after).items()}
        machine_before, machine_after = load_before.machine, load_after.machine
        elapsed = machine_after.total - machine_before.total
        if elapsed > 0:
            updates.machine_busy_percent = round(
                (machine_after.busy - machine_before.busy) * 100 / elapsed, 1)
            updates.machine_steal_percent = round(
                (machine_after.steal - machine_before.steal) * 100 / elapsed, 2)
            updates.machine_cores = os.cpu_count()

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

    def _load(self) -> Load:
        """CPU seconds so far of each process the updates go through, and of the machine."""
        clouds = [sample.cpu_seconds for sample in self._usage() if sample is not None]
        side = self._side_cpu()
        return Load(cloud=sum(clouds) if len(clouds) == len(self.clouds) and clouds else None,
                    simulator=side["simulator"], broker=side.get("broker"),
                    database=None if self.database is None else self.database.backend_cpu_seconds(),
                    machine=sample_machine())

    def _usage(self) -> list[ProcessSample | None]:
        """Each replica now; a killed one as it was when killed."""
        return [sample_process(cloud.pid) if cloud is not self.killed else self._at_kill
                for cloud in self.clouds]

    def _cloud_usage(
        self, before: list[ProcessSample | None], after_connect: list[ProcessSample | None],
        end: list[ProcessSample | None],
        messages_before: float | None, messages_after: float | None, sent: int,
    ) -> None:
        if not self.clouds:
            return
        cpu = sum(e.cpu_seconds - b.cpu_seconds for b, e in zip(before, end, strict=True)
                  if b is not None and e is not None)
        handled = None
        if messages_before is not None and messages_after is not None and self.killed is None:
            handled = int(messages_after - messages_before)
        self.result.cloud = CloudUsage(
            pids=[cloud.pid for cloud in self.clouds],
            rss_after_connect_mb=[round(s.rss_bytes / MB, 1) for s in after_connect if s is not None],
            rss_end_mb=[round(s.rss_bytes / MB, 1) for cloud, s in zip(self.clouds, end, strict=True)
                        if s is not None and cloud is not self.killed],
            cpu_seconds=round(cpu, 2), messages_in=sent, messages_handled=handled,
            cpu_ms_per_message=round(cpu * 1000 / sent, 4) if sent else None,
            cpu_ms_per_handled=round(cpu * 1000 / handled, 4) if handled else None)

    def _missing(self, fleet: Fleet, mark: str, what: str) -> None:
        missing = [node.name for node in fleet.nodes if mark not in node.marks]
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        self.result.failures.append(f"{len(missing)} node(s) {what} within "
                                    f"{self.options.timeout:g} s: {shown}")


@dataclass(frozen=True)
class Load:
    """``Phases._load``: CPU seconds by process (None: not ours to read); ``database`` by
    server process."""

    cloud: float | None
    simulator: float | None
    broker: float | None
    database: dict[int, float] | None
    machine: MachineSample


def _load_spent(before: Load, after: Load) -> dict[str, float | None]:
    """CPU seconds each spent between two readings. A database process that started
    between them counts from its start; one that ended between them is not counted."""
    spent = {name: _spent(getattr(before, name), getattr(after, name))
             for name in ("cloud", "simulator", "broker")}
    database = None
    if before.database is not None and after.database is not None:
        database = sum(value - before.database.get(pid, 0.0) for pid, value in after.database.items())
    return {**spent, "database": database}


def _settle_heap() -> None:
    """Between phases: collect, then freeze what is left out of later collections. The
    simulator's heap at 10,000 nodes made each full collection a ~100 ms pause of the event
    loop (23 of them, 2.3 s, in one run), measured as the latency of every node in flight;
    what the phases create after this is collected as usual, and ``run`` unfreezes at its end."""
    gc.collect()
    gc.freeze()


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


async def _messages(rests: list[CloudRest]) -> float | None:
    counts = [await rest.messages_in() for rest in rests]
    return None if any(count is None for count in counts) else sum(c for c in counts if c is not None)
