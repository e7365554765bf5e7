"""The chaos world: a private Mosquitto, the cloud, and real edge agents in network namespaces.

Each agent (``tether edge run``, a child process) runs inside a namespace of its own
(``launcher.chaos.netns``) and reaches the broker through a ``DelayRelay`` on the root
side of its veth, so every fault made on that path is one the agent really meets. The
cloud runs in this process (``LocalStack`` without its embedded broker) and talks to the
broker over loopback, outside the faults. Without CAP_NET_ADMIN (or without Mosquitto)
every test here skips and says why.

Long versions of the scenarios carry the ``chaos`` marker and run only when asked for
(``pytest -m chaos tests/chaos``); the default run takes the bounded ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.activation import activate
from edge_runtime.identity import IDENTITY_FILENAME
from edge_runtime.storage import atomic_write_bytes
from launcher.chaos.netns import Namespace, net_admin_problem
from launcher.chaos.relay import DelayRelay
from launcher.mosquitto import PrivateMosquitto, mosquitto_binary
from launcher.stack import LocalStack, StackConfig
from tests.paho_clients import release_sockets

T = TypeVar("T")
ROOT = Path(__file__).parents[2]
NS = "default"
LABEL = "chaos.tether.io/world"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``chaos``-marked (long) scenarios run only when ``-m`` names the marker."""
    if "chaos" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a long chaos run: select it with pytest -m chaos tests/chaos")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def net_admin() -> None:
    problem = net_admin_problem()
    if problem is not None:
        pytest.skip(f"fault injection needs the kernel: {problem}")
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, every: float = 0.05) -> float:
    """Seconds until ``probe()`` is truthy; fails the test with ``what`` after ``timeout``."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = probe()
        except (httpx.HTTPError, KeyError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return time.monotonic() - started
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Edge:
    """One edge agent in its own namespace, behind its own relay to the broker."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        self.ns = Namespace().create()
        self.relay = DelayRelay(self.ns.host_address, ("127.0.0.1", world.mosquitto.port)).start()
        self.data_dir = world.tmp / f"edge-{name}"
        self.log_path = world.tmp / f"edge-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def activate(self) -> None:
        cloud = self.world.stack.cloud
        assert cloud is not None
        cloud.create_node(self.name, namespace=NS, labels={LABEL: "yes"}, exist_ok=True)
        issued = cloud.issue_activation(self.name, namespace=NS)
        activate(self.world.stack.api_url, issued.token, self.data_dir)
        # the agent reaches the broker through its relay, across the namespace's veth
        path = self.data_dir / IDENTITY_FILENAME
        identity = json.loads(path.read_text())
        identity["mqtt"]["url"] = f"mqtt://{self.relay.url}"
        atomic_write_bytes(path, json.dumps(identity).encode())

    def start(self) -> subprocess.Popen[bytes]:
        # TETHER_CHAOS_AGENT_PATH: another checkout's agent (a before/after measurement)
        source = os.environ.get("TETHER_CHAOS_AGENT_PATH", str(ROOT))
        env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": self.world.topic_root, "PYTHONPATH": source,
               **self.world.edge_env}
        with self.log_path.open("ab") as log:
            self.process = self.ns.popen(
                [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=source)
        return self.process

    def kill(self) -> None:
        """SIGKILL the agent (its apps, in sessions of their own, keep running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def retried(self) -> int:
        """Requests this agent sent again (unanswered get or update, refused report, a
        re-fetch): the log lines that say so."""
        text = self.log()
        return sum(text.count(phrase) for phrase in (
            "asking again", "fetching the shadow again", "rejected this node's report",
            "refused to send this node's shadow"))

    def app_pids(self) -> dict[str, int]:
        """``app/replica -> pid`` from the native backend's pid files."""
        pids = {}
        for path in sorted((self.data_dir / "apps").glob("*/run/*.pid")):
            try:
                pids[f"{path.parent.parent.name}/{path.stem}"] = int(json.loads(path.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                pass
        return pids

    def close(self) -> None:
        self.kill()
        self.relay.close()
        self.ns.close()  # kills the apps too: they live in the namespace


class Documents:
    """Every ``shadow/update/documents`` the cloud publishes, per node (ordering checks),
    and every ``status`` a node (or its will) publishes, with when it came."""

    def __init__(self, world: World) -> None:
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[str, list[tuple[float, bool]]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-docs-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", world.mosquitto.port)
        self.client.subscribe([(f"{world.topic_root}/{NS}/+/shadow/update/documents", 1),
                               (f"{world.topic_root}/{NS}/+/status", 1)])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            node = message.topic.split("/")[-2]
            online = bool(json.loads(message.payload).get("online"))
            self.statuses.setdefault(node, []).append((time.monotonic(), online))
            return
        node = message.topic.split("/")[-4]
        self.seen.setdefault(node, []).append(json.loads(message.payload)["current"])

    def offline_since(self, node: str, since: float) -> float | None:
        """When the first ``online: false`` after ``since`` came (monotonic), or None."""
        return next((at for at, online in self.statuses.get(node, []) if at >= since and not online), None)

    def out_of_order(self, node: str, key: str) -> list[str]:
        """In the order the cloud applied them (by version; the stream itself may arrive
        out of order, from the cloud's two MQTT connections): a version applied twice, or
        a reported or desired ``properties[key]`` that went back."""
        problems: list[str] = []
        docs = sorted(self.seen.get(node, []), key=lambda doc: int(doc["version"]))
        versions = [doc["version"] for doc in docs]
        problems += [f"version {v} applied twice" for v in sorted(set(versions)) if versions.count(v) > 1]
        for section in ("reported", "desired"):
            value = -1
            for doc in docs:
                seen = doc["state"].get(section, {}).get("properties", {}).get(key)
                if isinstance(seen, int):
                    if seen < value:
                        problems.append(f"{section} {key}={seen} after {value} (v{doc['version']})")
                    value = seen
        return problems

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        release_sockets(self.client)


class World:
    """Broker, cloud, and edges; ``close`` removes every namespace and process it made."""

    def __init__(self, tmp: Path, *, keepalive: int = 5, database_url: str | None = None) -> None:
        self.tmp, self.keepalive = tmp, keepalive
        self.topic_root = f"chaos{uuid.uuid4().hex[:8]}/tether/v1"
        self.edge_env = {
            "TETHER_EDGE_KEEPALIVE_SECONDS": str(keepalive),
            "TETHER_EDGE_HEARTBEAT_SECONDS": "5",
            "TETHER_EDGE_RECONCILE_SECONDS": "2",
            "TETHER_EDGE_STOP_GRACE_SECONDS": "1",
            "TETHER_EDGE_FUNCTION_PROXY_PORT": "0",
        }
        self.mosquitto = PrivateMosquitto().start()
        self.edges: dict[str, Edge] = {}
        try:
            self.stack = LocalStack(StackConfig(
                data_dir=tmp / "cloud", http_port=0, mqtt_port=0, mqtts_port=None,
                external_mqtt_url=self.mosquitto.url, database_url=database_url,
                topic_root=self.topic_root, edge=False)).start()
            self.api = httpx.Client(base_url=f"{self.stack.api_url}/v1/namespaces/{NS}",
                                    headers={"Authorization": f"Bearer {self.stack.admin_token()}"},
                                    timeout=10)
            self.documents = Documents(self)
        except BaseException:
            self.mosquitto.close()
            raise

    def add_edge(self, name: str, *, start: bool = True) -> Edge:
        edge = Edge(self, name)
        self.edges[name] = edge
        edge.activate()
        if start:
            edge.start()
        return edge

    # -- the cloud's view --------------------------------------------------------------------
    def shadow(self, node: str) -> dict[str, Any]:
        response = self.api.get(f"/nodes/{node}/shadow")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def online(self, node: str) -> bool:
        response = self.api.get(f"/nodes/{node}")
        response.raise_for_status()
        return bool(response.json()["online"])

    def set_properties(self, node: str, properties: dict[str, Any]) -> int:
        """PATCH desired properties; the version the cloud accepted."""
        response = self.api.patch(f"/nodes/{node}/shadow", json={"state": {"desired": {"properties": properties}}})
        response.raise_for_status()
        return int(response.json()["version"])

    def put_app(self, name: str, *, tag: str = "1") -> None:
        """A native app on every edge of the world: one ``sleep`` (its args name a version)."""
        app = {"name": name, "selector": f"{LABEL}=yes",
               "services": [{"name": "main", "command": ["sleep", f"{86400}.{tag}"]}]}
        self.api.put(f"/apps/{name}", json=app).raise_for_status()

    def app_version(self, name: str) -> str:
        response = self.api.get(f"/apps/{name}")
        response.raise_for_status()
        return str(response.json()["version"])

    def converged(self, node: str, *, properties: dict[str, Any] | None = None,
                  apps: dict[str, str] | None = None) -> bool:
        """The node reports what is desired: no delta, and these values if given."""
        state = self.shadow(node)["state"]
        reported = state["reported"]
        if state.get("delta"):
            return False
        if properties is not None and reported.get("properties") != properties:
            return False
        if apps is not None:
            for app, version in apps.items():
                stats = reported.get("appstats", {}).get(app, {})
                if reported.get("apps", {}).get(app) != version or stats.get("status") != "Running":
                    return False
        return True

    def close(self) -> None:
        for edge in self.edges.values():
            edge.close()
        self.documents.close()
        self.api.close()
        self.stack.stop()
        self.mosquitto.close()


@pytest.fixture
def world(net_admin: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """A world; ``@pytest.mark.parametrize("world", [{"keepalive": 30}], indirect=True)``
    passes options."""
    made = World(tmp_path, **getattr(request, "param", {}))
    try:
        yield made
    finally:
        made.close()


def record(scenario: str, **figures: Any) -> None:
    """One row of the chaos table: printed, and appended to ``$TETHER_CHAOS_REPORT``
    (JSON lines) when set."""
    row = {"scenario": scenario, **figures}
    print(f"chaos: {json.dumps(row)}")
    target = os.environ.get("TETHER_CHAOS_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
