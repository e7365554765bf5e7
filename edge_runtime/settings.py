"""The edge agent's settings, one pydantic-settings class handed to the agent explicitly.

Everything an operator may tune comes from flags or ``TETHER_EDGE_*`` variables and is
read when ``EdgeSettings()`` is built, never at import time, so tests pass their own.
What identifies the node (broker URL, namespace, node, password) is not a setting: it
comes from the identity file that activation writes into ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_runtime.errors import SettingsError
from schemas.images import TETHER_IMAGE
from schemas.names import is_valid_name
from schemas.topics import DEFAULT_ROOT, TopicScheme

Backend = Literal["native", "kube"]
PROPERTIES_FILENAME = "properties.json"
"""``DATA_DIR/properties.json``: desired.properties as delivered to apps (see engine.reporting)."""


DEFAULT_FUNCTION_IMAGE = TETHER_IMAGE
"""Function services without a command run Tether's runtime from the Tether image."""
DEFAULT_FUNCTION_PORT = 8080


class EdgeSettings(BaseSettings):
    """Tunables of one edge agent (env prefix ``TETHER_EDGE_``)."""

    model_config = SettingsConfigDict(env_prefix="TETHER_EDGE_", extra="forbid")

    data_dir: Path = Field(default=Path("./data/edge"), description="identity, cache, lock")
    backend: Backend = "native"
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    request_timeout_seconds: float = Field(
        default=2.0, gt=0, description="an unanswered get or update is sent again after this, doubling"
    )
    keepalive_seconds: int = Field(default=30, ge=5, le=65535)
    reconnect_min_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    certificate_login: bool = Field(
        default=False, description="a node with a certificate sends no username: the broker "
        "maps the certificate to the node (RabbitMQ ssl_cert_login, NATS verify_and_map), "
        "and would refuse a username without a password")
    reconnect_path_seconds: float = Field(
        default=2.0, gt=0, description="retry within this while the network (not the broker) is down"
    )
    # How long reported changes are gathered into one update. It adds to every round
    # trip, so it stays small (the round-trip target is p50 < 25 ms end to end).
    report_debounce_seconds: float = Field(default=0.005, ge=0, le=0.05)
    function_proxy_host: str = Field(default="127.0.0.1", description="where the function proxy listens")
    function_proxy_port: int = Field(default=50011, ge=0, le=65535, description="0: any free port")
    function_timeout_seconds: float = Field(default=30.0, gt=0, le=300, description="per invocation")
    topic_root: str = DEFAULT_ROOT
    # The engine (DESIGN §8): a pass on every change, and at least this often.
    reconcile_seconds: float = Field(default=10.0, gt=0, description="level-triggered period")
    stats_seconds: float = Field(default=30.0, gt=0, description="nodestats and app usage refresh")
    # Native backend: how processes are stopped and restarted.
    stop_grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM, then SIGKILL after")
    restart_backoff_seconds: float = Field(default=1.0, gt=0)
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0)
    # Certificate renewal (a node activated with a CSR): at this fraction of the lifetime,
    # less up to 5 % jitter; checked at start and then at least this often.
    renew_at_fraction: float = Field(default=2 / 3, gt=0, lt=1)
    renew_check_seconds: float = Field(default=3600.0, gt=0)
    renew_retry_min_seconds: float = Field(default=30.0, gt=0)
    renew_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # Kube backend: the namespace Tether manages on the node's cluster, and how function
    # services without a command run there (the Tether image holds the runtime).
    kube_namespace: str = "tether-edge"
    kube_poll_seconds: float = Field(default=2.0, gt=0, description="how often to look for changes")
    kube_deployment: str = Field(default="tether-edge", description="the agent's own Deployment")
    kube_container: str = Field(default="agent", description="its container running the agent")
    # Self-upgrade (desired.sysapps.tether): off, the node reports its version and stays on it.
    self_upgrade: bool = True
    lock_wait_seconds: float = Field(default=0.0, ge=0, description="wait for the data dir's lock")
    ready_file: Path | None = Field(default=None, description="written once synced (kube readiness)")
    function_image: str = Field(default=DEFAULT_FUNCTION_IMAGE, min_length=1, max_length=1024)
    function_port: int = Field(default=DEFAULT_FUNCTION_PORT, ge=1, le=65535)

    @field_validator("kube_namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(f"{value!r} is not a DNS-1123 label")
        return value

    @field_validator("topic_root")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        TopicScheme(root=value)  # raises ValueError with a clear message
        return value

    @model_validator(mode="after")
    def _ordered_backoff(self) -> EdgeSettings:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("reconnect_max_seconds must be >= reconnect_min_seconds")
        if self.restart_backoff_max_seconds < self.restart_backoff_seconds:
            raise ValueError("restart_backoff_max_seconds must be >= restart_backoff_seconds")
        return self

    @property
    def topics(self) -> TopicScheme:
        return TopicScheme(root=self.topic_root)


def load_settings(**overrides: Any) -> EdgeSettings:
    """Build the settings from the environment plus explicit overrides (None = not given).

    Raises SettingsError with one line per invalid field instead of pydantic's report.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return EdgeSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid edge settings: {problems}") from exc
