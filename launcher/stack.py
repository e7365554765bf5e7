"""Broker, cloud and a local edge node as one process tree: what ``tether up`` runs.

Order matters: the broker starts first (its bound port is the cloud's MQTT URL), its
password check is the cloud's, the bridge connects once the broker listens, the HTTP API
then serves, and the local node is activated against that API and run as a child process,
exactly as a remote node would be.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from broker.embedded import EmbeddedBroker, run_in_thread
from broker.settings import BrokerSettings
from cloud_api.runtime import Cloud, bind_http
from cloud_api.security.pki import CertificateAuthority
from cloud_api.settings import CloudSettings
from edge_runtime.activation import activate
from edge_runtime.backends.native import NativeBackend
from launcher.serving import BackgroundServer
from schemas.topics import DEFAULT_ROOT

LOCAL_LABEL = "tether.io/node"
DEMO_APP = "demo"
DEMO_MESSAGE = "hello from Tether"
# Prints the config's message and the node's desired properties every 10 s.
DEMO_CODE = """\
import json, os, pathlib, time
message = pathlib.Path("conf/message.txt").read_text().strip()
while True:
    properties = json.loads(pathlib.Path(os.environ["TETHER_PROPERTIES"]).read_text() or "{}")
    print(message, "- properties:", properties, flush=True)
    time.sleep(10)
"""


def demo_app(node: str) -> dict[str, Any]:
    return {
        "name": DEMO_APP,
        "selector": f"{LOCAL_LABEL}={node}",
        "services": [{
            "name": "hello",
            "command": [sys.executable, "-c", DEMO_CODE],
            "volumeMounts": [{"name": "conf", "mountPath": "conf"}],
        }],
        "volumes": [{"name": "conf", "config": {"name": DEMO_APP}}],
    }


@dataclass
class StackConfig:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 9080
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtts_port: int | None = 8883  # the mTLS listener for nodes with certificates; None: none
    external_mqtt_url: str | None = None  # use this broker instead of the embedded one
    database_url: str | None = None
    topic_root: str = DEFAULT_ROOT
    edge: bool = True
    namespace: str = "default"
    local_node: str = "local"
    edge_env: dict[str, str] = field(default_factory=dict)
    demo_app: bool = False  # tether up: a small app on the local node, so a new user sees one run


class LocalStack:
    """Starts and stops the pieces of ``tether up`` in order."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker: EmbeddedBroker | None = None
        self._broker_cm: Any = None
        self.cloud: Cloud | None = None
        self.http: BackgroundServer | None = None
        self.edge_process: subprocess.Popen[bytes] | None = None
        self.mqtt_url = ""
        self.mqtts_url: str | None = None
        self.api_url = ""

    @property
    def edge_data_dir(self) -> Path:
        return self.config.data_dir / f"edge-{self.config.local_node}"

    @property
    def edge_log(self) -> Path:
        return self.edge_data_dir / "edge.log"

    def _authenticate(self, username: str | None, password: str | None) -> bool:
        return self.cloud is not None and self.cloud.authenticate_mqtt(username, password)

    def _check_certificate(self, identity: str | None, serial: str | None) -> bool:
        return self.cloud is not None and self.cloud.authenticate_certificate(identity, serial)

    def _disconnect(self, identity: str) -> None:
        """A revoked node is disconnected now (the cloud announces, the broker acts)."""
        if self.broker is not None:
            self.broker.disconnect_user_threadsafe(identity)

    def _broker_tls_files(self) -> dict[str, Path]:
        """The broker's server certificate, issued by the cloud's CA (made on first start)."""
        authority = CertificateAuthority.load_or_create(self.config.data_dir / "ca")
        directory = self.config.data_dir / "broker-tls"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = {"certfile": directory / "server.crt", "keyfile": directory / "server.key", "cafile": directory / "ca.crt"}
        cert, key = authority.issue("tether-broker", sans=["127.0.0.1", "::1", "localhost", self.config.mqtt_host],
                                    days=365, server=True)
        files["keyfile"].touch(mode=0o600)
        files["keyfile"].write_text(key)
        files["certfile"].write_text(cert)
        files["cafile"].write_text(authority.certificate_pem)
        return files

    def start(self) -> Self:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        http_socket = bind_http(config.http_host, config.http_port, flag="--http-port")
        try:
            if config.external_mqtt_url:
                self.mqtt_url = config.external_mqtt_url
            else:
                self.start_broker(config.mqtt_port, config.mqtts_port)
            host, port = http_socket.getsockname()[:2]
            self.api_url = f"http://{host}:{port}"
            self.start_cloud(http_socket)
            if config.edge:
                self.start_edge()
        except BaseException:
            http_socket.close()
            self.stop()
            raise
        return self

    def start_broker(self, port: int, tls_port: int | None) -> None:
        tls: dict[str, Any] = {} if tls_port is None else {"tls_port": tls_port, **self._broker_tls_files()}
        settings = BrokerSettings(host=self.config.mqtt_host, port=port, topic_root=self.config.topic_root, **tls)
        self._broker_cm = run_in_thread(settings, self._authenticate, check_certificate=self._check_certificate)
        self.broker = self._broker_cm.__enter__()
        self.mqtt_url = self.broker.url
        self.mqtts_url = self.broker.tls_url if tls_port is not None else None

    def stop_broker(self) -> None:
        if self._broker_cm is not None:
            self._broker_cm.__exit__(None, None, None)
            self._broker_cm = None
            self.broker = None

    def restart_broker(self) -> None:
        """Stop the embedded broker and start a new one on the same port (fault tests)."""
        assert self.broker is not None, "restart_broker() needs the embedded broker"
        port, tls_port = self.broker.port, self.broker.tls_port if self.mqtts_url else None
        self.stop_broker()
        self.start_broker(port, tls_port)

    def start_cloud(self, http_socket: socket.socket) -> None:
        config = self.config
        self.cloud = Cloud(
            CloudSettings(
                data_dir=config.data_dir,
                database_url=config.database_url,
                mqtt_url=self.mqtt_url,
                advertised_mqtts_url=self.mqtts_url,
                public_url=self.api_url,
                topic_root=config.topic_root,
            )
        )
        self.cloud.revocations.subscribe(self._disconnect)
        self.cloud.start_bridge()
        self.http = BackgroundServer(self.cloud.app, http_socket).start()

    def stop_cloud(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.cloud is not None:
            self.cloud.close()
            self.cloud = None

    def restart_cloud(self) -> None:
        """Stop the cloud (API, bridge, store) and open it again on the same data (fault tests)."""
        port = int(self.api_url.rsplit(":", 1)[1])
        self.stop_cloud()
        self.start_cloud(bind_http(self.config.http_host, port, flag="--http-port"))

    def bridge_password(self) -> str:
        assert self.cloud is not None
        return self.cloud.bridge_password

    def admin_token(self) -> str:
        assert self.cloud is not None
        return self.cloud.settings.admin_token_path.read_text().strip()

    def start_edge(self) -> None:
        """Activate the local node (every start, so its MQTT URL is current) and run it."""
        assert self.cloud is not None
        config = self.config
        self.cloud.create_node(
            config.local_node, namespace=config.namespace, labels={LOCAL_LABEL: config.local_node}, exist_ok=True
        )
        if config.demo_app:
            self.ensure_demo_app()
        issued = self.cloud.issue_activation(config.local_node, namespace=config.namespace)
        activate(self.api_url, issued.token, self.edge_data_dir)
        env = {**os.environ, "TETHER_EDGE_TOPIC_ROOT": config.topic_root, **config.edge_env}
        log = self.edge_log.open("ab")
        self.edge_process = subprocess.Popen(
            [sys.executable, "-m", "tether", "edge", "run", "--data-dir", str(self.edge_data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def ensure_demo_app(self) -> None:
        """Create the demo config and app once; an existing one (maybe edited) is left alone."""
        headers = {"Authorization": f"Bearer {self.admin_token()}"}
        base = f"{self.api_url}/v1/namespaces/{self.config.namespace}"
        with httpx.Client(base_url=base, headers=headers, timeout=10) as api:
            if api.get(f"/apps/{DEMO_APP}").status_code == 200:
                return
            api.put(f"/configs/{DEMO_APP}", json={"name": DEMO_APP, "data": {"message.txt": DEMO_MESSAGE}}).raise_for_status()
            api.put(f"/apps/{DEMO_APP}", json=demo_app(self.config.local_node)).raise_for_status()

    def stop_edge(self, *, timeout: float = 10.0) -> None:
        """Stop the local node's agent, then its apps: ``tether up`` promises that Ctrl-C stops
        everything. (A real node's agent leaves its apps running for the next agent to adopt;
        the next ``tether up`` starts them again from the node's cached desired state.)"""
        process, self.edge_process = self.edge_process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and (self.edge_data_dir / "apps").exists():
            backend = NativeBackend(self.edge_data_dir, stop_grace_seconds=5)
            try:
                for app in backend.observe():
                    backend.remove(app)
            finally:
                backend.close()

    def stop(self) -> None:
        self.stop_edge()
        self.stop_cloud()
        self.stop_broker()

    def wait(self) -> int:
        """Block until interrupted or until the edge child dies; its exit code, or 0."""
        while True:
            if self.edge_process is not None and self.edge_process.poll() is not None:
                return self.edge_process.returncode or 1
            time.sleep(0.5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
