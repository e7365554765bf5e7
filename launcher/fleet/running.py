"""``tether bench fleet``: start what the bench needs, run its phases, return the figures.

Unless given URLs, the bench starts its own, and stops (or drops) it afterwards: a
private Mosquitto on a free loopback port, a scratch PostgreSQL database on the server
given (else SQLite in a temp dir), and ``tether cloud serve`` -- one process, or several
replicas splitting the MQTT traffic with a shared subscription. The phases themselves
are ``phases.Phases``. Options that cannot work together are a ``ServiceError`` before
anything starts.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from launcher.fleet.phases import Phases
from launcher.fleet.results import FleetResult
from launcher.fleet.services import CloudProcess, ScratchDatabase, ServiceError
from launcher.mosquitto import PrivateMosquitto, raise_nofile

FAULTS = ("broker-restart", "replica-kill", "partition")
NET_FAULTS = ("partition",)  # made in the kernel: the fleet's sockets in a network namespace
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
    partition_seconds: float = 30.0  # --fault partition: how long every packet is dropped


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
        scratch_db: ScratchDatabase | None = None
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
        net = None
        if options.fault in NET_FAULTS:
            from launcher.chaos.netns import Namespace
            from launcher.chaos.relay import DelayRelay

            parts = urlsplit(mqtt_url)
            namespace = stack.enter_context(Namespace())
            relay = stack.enter_context(DelayRelay(namespace.host_address,
                                                   (parts.hostname or "127.0.0.1", parts.port or 1883)))
            net = (namespace, relay)
        bench = Phases(options, result, mqtt_url, url, token, clouds, mosquitto, progress, net=net,
                       database=scratch_db)
        asyncio.run(bench.run())
        for cloud in clouds:
            if cloud.process is not None and cloud.process.poll() is not None and cloud is not bench.killed:
                result.failures.append(f"cloud replica {cloud.pid} exited:\n{cloud.log_tail()}")
        return result


def _check(options: FleetOptions) -> None:
    if options.fault is not None and options.fault not in FAULTS:
        raise ServiceError(f"--fault must be one of {', '.join(FAULTS)}")
    if options.fault in NET_FAULTS:
        from launcher.chaos.netns import net_admin_problem

        problem = net_admin_problem()
        if problem is not None:
            raise ServiceError(f"--fault {options.fault} puts the fleet in a network namespace: {problem}")
    if options.fault == "broker-restart" and options.mqtt_url is not None:
        raise ServiceError("--fault broker-restart restarts the bench's own broker: drop --mqtt-url")
    if options.fault == "replica-kill" and (options.replicas < 2 or options.cloud_url):
        raise ServiceError("--fault replica-kill needs --replicas 2 or more (started by the bench)")
    if options.replicas > 1 and not (options.database_url or "").startswith("postgres"):
        raise ServiceError("--replicas > 1 needs --database-url postgresql://... (one shared database)")
    if options.cloud_url is not None and options.token is None:
        raise ServiceError("--cloud-url needs --token (an admin token of that cloud)")
