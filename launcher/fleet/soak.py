"""``tether bench soak``: a fleet kept busy through a fault every few seconds or minutes,
and the cloud's and broker's memory and file descriptors read after every round.

Why: a leak (a socket per reconnect, a session per node restart, a cache that only
grows) shows only over many faults. Each round makes one fault -- in turn a broker
restart, a partition of the whole fleet (its sockets in a network namespace, every
packet dropped for ``partition_seconds``; skipped, with the reason, without
CAP_NET_ADMIN), and no fault -- then rolls out a new version of one app to every node
and waits until every node reports it Running. After each round: the cloud's and the
broker's RSS (``/proc/PID/status``) and open descriptors (``/proc/PID/fd``). The soak is
``ok`` when every round converged and, from the first round to the last, RSS grew by at
most ``rss_growth`` (a fraction) and descriptors by at most ``fd_growth``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.fleet.cloudrest import CloudRest
from launcher.fleet.fleet import Fleet
from launcher.fleet.phases import FLEET_LABEL, REST_TIMEOUT_SECONDS
from launcher.fleet.results import MB
from launcher.fleet.services import CloudProcess, ServiceError, sample_process
from launcher.mosquitto import PrivateMosquitto, raise_nofile

APP = "soak-app"


@dataclass(frozen=True)
class SoakOptions:
    nodes: int = 1000
    seconds: float = 3600.0
    fault_every: float = 180.0  # a round starts this often (or when the last one ends)
    partition_seconds: float = 20.0
    timeout: float = 120.0  # per round's convergence
    rss_growth: float = 0.2
    fd_growth: int = 10
    min_rounds: int = 3  # at least one of each fault, however short ``seconds``


@dataclass
class Round:
    fault: str
    converge_seconds: float | None
    cloud_rss_mb: float
    cloud_fds: int
    broker_rss_mb: float
    broker_fds: int


@dataclass
class SoakResult:
    nodes: int
    rounds: list[Round] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and len(self.rounds) > 0

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "rounds": [asdict(r) for r in self.rounds],
                "skipped": self.skipped, "failures": self.failures, "ok": self.ok}


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_soak(options: SoakOptions) -> SoakResult:
    """Start a private Mosquitto and cloud, run the rounds, check growth; never raises for
    a round that did not converge (it is a line in ``failures``)."""
    from launcher.chaos.netns import Namespace, net_admin_problem
    from launcher.chaos.relay import DelayRelay

    raise_nofile(options.nodes + 1024)
    result = SoakResult(options.nodes)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tether-soak-") as scratch:
        mosquitto = stack.enter_context(PrivateMosquitto(nofile=options.nodes + 1024, max_connections=-1,
                                                         max_queued_messages=1_000_000,
                                                         max_inflight_messages=100))
        cloud = CloudProcess(data_dir=Path(scratch) / "cloud", mqtt_url=mosquitto.url,
                             log_path=Path(scratch) / "cloud.log")
        stack.callback(cloud.stop)
        cloud.start()
        problem = net_admin_problem()
        net = None
        if problem is None:
            namespace = stack.enter_context(Namespace())
            relay = stack.enter_context(DelayRelay(namespace.host_address, ("127.0.0.1", mosquitto.port)))
            net = (namespace, relay)
        else:
            result.skipped.append(f"partition: {problem}")
        asyncio.run(_rounds(options, result, mosquitto, cloud, net))
    return result


async def _rounds(options: SoakOptions, result: SoakResult, mosquitto: PrivateMosquitto,
                  cloud: CloudProcess, net: Any) -> None:
    namespace_name = f"soak-{uuid.uuid4().hex[:8]}"
    names = [f"s{index:05d}" for index in range(options.nodes)]
    host, port, factory = "127.0.0.1", mosquitto.port, None
    if net is not None:
        host, port, factory = net[0].host_address, net[1].port, net[0].socket
    rest = CloudRest(cloud.url, cloud.admin_token(), timeout=REST_TIMEOUT_SECONDS)
    fleet = Fleet(names, namespace=namespace_name, host=host, port=port, sock_factory=factory)
    faults = ["broker-restart", "partition", "none"] if net is not None else ["broker-restart", "none"]
    try:
        await rest.create_namespace(namespace_name)
        await rest.create_nodes(namespace_name, names, labels={FLEET_LABEL: namespace_name})
        fleet.start()
        if not await fleet.wait_for("reported", timeout=options.timeout):
            result.failures.append("the fleet never connected")
            return
        deadline = time.monotonic() + options.seconds
        index = 0
        while True:
            started = time.monotonic()
            fault = faults[index % len(faults)]
            converged = await _round(options, fleet, rest, namespace_name, index, fault, mosquitto, net)
            if converged is None:
                result.failures.append(f"round {index} ({fault}): not every node converged "
                                       f"within {options.timeout:g} s")
            sample, broker = sample_process(cloud.pid), mosquitto.process
            broker_sample = sample_process(broker.pid) if broker is not None else None
            result.rounds.append(Round(
                fault, None if converged is None else round(converged, 2),
                round(sample.rss_bytes / MB, 1), _fds(cloud.pid),
                round(broker_sample.rss_bytes / MB, 1) if broker_sample else 0.0,
                _fds(broker.pid) if broker is not None else 0))
            index += 1
            if time.monotonic() >= deadline and index >= options.min_rounds:
                break
            await asyncio.sleep(max(0.0, options.fault_every - (time.monotonic() - started)))
    finally:
        await fleet.stop()
        await rest.aclose()
    _check_growth(options, result)


async def _round(options: SoakOptions, fleet: Fleet, rest: CloudRest, namespace: str, index: int,
                 fault: str, mosquitto: PrivateMosquitto, net: Any) -> float | None:
    """One fault and one rollout; seconds until every node ran it, or None."""
    app = {"name": APP, "selector": f"{FLEET_LABEL}={namespace}",
           "services": [{"name": "main", "command": ["sleep", f"86400.{index}"]}]}
    started = time.monotonic()
    if fault == "partition":
        await asyncio.to_thread(net[0].blackhole)
    _, stored = await (rest.create_app(namespace, app) if index == 0 else rest.update_app(namespace, app))
    if fault == "broker-restart":
        await asyncio.to_thread(mosquitto.restart)
    elif fault == "partition":
        await asyncio.sleep(options.partition_seconds)
        await asyncio.to_thread(net[0].heal)
    done = await fleet.wait_for(f"running:{APP}@{stored.get('version')}", timeout=options.timeout)
    return time.monotonic() - started if done else None


def _check_growth(options: SoakOptions, result: SoakResult) -> None:
    if len(result.rounds) < 2:
        return
    first, last = result.rounds[0], result.rounds[-1]
    for what, before, after in (("cloud RSS", first.cloud_rss_mb, last.cloud_rss_mb),
                                ("broker RSS", first.broker_rss_mb, last.broker_rss_mb)):
        if before and after > before * (1 + options.rss_growth):
            result.failures.append(f"{what} grew from {before} MB to {after} MB over "
                                   f"{len(result.rounds)} rounds")
    if last.cloud_fds > first.cloud_fds + options.fd_growth:
        result.failures.append(f"the cloud's open descriptors grew from {first.cloud_fds} to {last.cloud_fds}")
    if last.broker_fds > first.broker_fds + options.fd_growth:
        result.failures.append(f"the broker's open descriptors grew from {first.broker_fds} to {last.broker_fds}")


__all__ = ["Round", "ServiceError", "SoakOptions", "SoakResult", "run_soak"]
