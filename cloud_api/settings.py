"""Settings of the cloud process: one pydantic-settings class, handed in, never read at import.

``CloudSettings()`` reads ``TETHER_CLOUD_*`` environment variables when it is built, so the
CLI builds it once from flags and environment, and tests build it with explicit values.
Everything derived from a setting (the SQLAlchemy URL, the shadow limits, the topic
scheme) is a property here, so no other module re-derives it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import Rejection
from schemas.images import TETHER_IMAGE
from schemas.names import validate_name
from schemas.shadow import ShadowLimits
from schemas.topics import DEFAULT_ROOT, TopicScheme

MQTT_SCHEMES = ("mqtt", "mqtts")
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def sqlalchemy_url(url: str) -> str:
    """A database URL as SQLAlchemy wants it: ``postgresql://`` gets the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"database URL {url!r} has no scheme: use sqlite:///PATH or postgresql://..."
        )
    if scheme in _DRIVERS:
        return f"{_DRIVERS[scheme]}://{rest}"
    if scheme in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        return url
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def mqtt_endpoint(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:port`` or ``mqtts://host:port`` -> (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
        raise ValueError(f"MQTT URL {url!r} must look like mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class CloudSettings(BaseSettings):
    """What ``tether cloud serve`` needs to know; every field is ``TETHER_CLOUD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TETHER_CLOUD_", extra="forbid")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="sqlite:///PATH or postgresql://...; default sqlite in data_dir"
    )
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="where the bridge connects")
    mqtt_username: str = "tether-cloud"
    mqtt_password: SecretStr | None = Field(
        default=None, description="None: read or generate DATA_DIR/bridge.secret"
    )
    mqtt_client_id: str | None = Field(default=None, description="None: unique per process")
    mqtt_cafile: Path | None = Field(
        default=None, description="mqtts://: the CA the broker's certificate is checked "
        "against; None: the system's")
    mqtt_certfile: Path | None = Field(
        default=None, description="mqtts://: a client certificate the bridge presents (with "
        "mqtt_keyfile), for a broker that wants one (NATS's MQTT listener with verify)")
    mqtt_keyfile: Path | None = Field(default=None, description="the key of mqtt_certfile")
    mqtt_certificate_login: bool = Field(
        default=False, description="with mqtt_certfile: send no username, the broker maps "
        "the certificate to the bridge's user (RabbitMQ ssl_cert_login, NATS verify_and_map)")
    advertised_mqtt_url: str | None = Field(
        default=None, description="the broker URL handed to nodes at activation; default mqtt_url"
    )
    public_url: str = Field(
        default="http://127.0.0.1:9080", description="the API URL in install commands"
    )
    topic_root: str = DEFAULT_ROOT
    share_group: str | None = Field(
        default=None, description="subscribe with $share/GROUP/... so replicas split the traffic"
    )
    activation_token_ttl_seconds: int = Field(default=3600, gt=0)
    max_state_bytes: int = Field(default=256 * 1024, gt=0)
    max_depth: int = Field(default=10, gt=0)
    max_client_token_bytes: int = Field(default=64, gt=0)
    bridge_workers: int = Field(
        default=1, ge=1, le=64,
        description="threads serving node messages; one batches most (SQLite has one writer anyway)",
    )
    bridge_queue_size: int = Field(default=10_000, ge=1, description="per worker; full -> 429")
    audit_max_rows: int = Field(default=1_000_000, ge=1000, description="audit rows kept")
    audit_max_age_days: int = Field(default=90, ge=1, description="audit rows older are pruned")
    rematch_poll_seconds: float = Field(
        default=2.0, gt=0,
        description="how often to look for matching owed that no one here was told of",
    )
    bridge_stale_seconds: float = Field(
        default=1.5, ge=0,
        description="a node request queued longer is dropped: below the edge's 2 s request "
        "timeout, so the cloud never answers what its node has given up on; 0: never",
    )
    rollout_poll_seconds: float = Field(
        default=5.0, gt=0, description="how often rollouts are looked at (waves, health gates)",
    )
    history_keep: int = Field(
        default=100, ge=1, description="shadow history rows kept per node (pruned, not per write)",
    )
    history_prune_seconds: float = Field(
        default=60.0, gt=0, description="how often the shadow history is pruned to history_keep",
    )
    rematch_backlog: int = Field(
        default=500, ge=0,
        description="a fan-out waits between batches while more node messages are queued",
    )
    rematch_pace_seconds: float = Field(
        default=10.0, ge=0, description="the longest a fan-out waits for the backlog per batch",
    )
    bridge_batch_size: int = Field(
        default=256, ge=1, le=10_000,
        description="most messages a bridge worker answers with one transaction (group commit)",
    )

    # -- PKI and TLS (cloud_api.security.pki, activation with a CSR, HTTPS) ------------------------
    ca_certfile: Path | None = Field(default=None, description="an operator's CA; None: DATA_DIR/ca")
    ca_keyfile: Path | None = Field(default=None, description="the key of ca_certfile")
    node_certificate_days: int = Field(default=30, gt=0, le=825)
    server_certificate_days: int = Field(default=365, gt=0, le=825)
    advertised_mqtts_url: str | None = Field(
        default=None, description="the mqtts:// URL handed to nodes activated with a CSR"
    )
    tls_certfile: Path | None = Field(default=None, description="HTTPS certificate of the API")
    tls_keyfile: Path | None = Field(default=None, description="HTTPS key of the API")
    activation_rate_per_minute: int = Field(default=10, ge=1, description="per client IP")
    kick_revoked_sessions: bool = Field(
        default=True, description="take over a revoked node's MQTT session (cloud_api.mqtt.kicking)"
    )
    edge_image: str = Field(
        default=TETHER_IMAGE, min_length=1, max_length=1024,
        description="the image the kube install manifest runs the agent (and its functions) in",
    )
    edge_wheel: Path | None = Field(
        default=None,
        description="the wheel install.sh installs (served at /v1/init/NAME); "
        "None: the cloud packs the code it runs (cloud_api.packaging)",
    )

    share_probe_seconds: float = Field(
        default=5.0, gt=0,
        description="with a share group: how long the probe through it may take "
        "(cloud_api.mqtt.share_probing)",
    )
    liveness_timeout_seconds: float = Field(
        default=75.0, ge=0,
        description="a node online but silent this long is marked offline (2.5 edge "
        "heartbeats: with the sweep's period, offline within 3; cloud_api.mqtt.liveness); "
        "0: only its status messages count",
    )

    # -- function invocations relayed to nodes (cloud_api.mqtt.functions) --------------------
    function_timeout_seconds: float = Field(
        default=30.0, gt=0, description="when an :invoke names no ?timeout="
    )
    function_max_timeout_seconds: float = Field(default=300.0, gt=0, description="cap on it")
    function_max_in_flight: int = Field(
        default=1000, ge=1, description="invocations awaiting a node's answer; more: 429"
    )
    # -- logs relayed from nodes, and their events (cloud_api.mqtt.log_relay) ----------------
    logs_max_streams: int = Field(default=1000, ge=1, description="open log streams; more: 429")
    logs_timeout_seconds: float = Field(
        default=10.0, gt=0, description="wait for a node's whole log tail; then 504")
    logs_renew_seconds: float = Field(
        default=5.0, gt=0, description="a follower renews its stream this often (lease: 3 times)")
    events_retention_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="events not seen again for this long are deleted")
    events_max_per_node: int = Field(
        default=1000, ge=1, description="distinct events kept per node, the oldest dropped first")

    # -- resources (cloud_api.services.secrets_crypto) ------------------------------------
    secret_key: SecretStr | None = Field(
        default=None, description="encrypts secrets at rest; None: read or make secret_key_file"
    )
    secret_key_file: Path | None = Field(
        default=None, description="file holding the secret key; None: DATA_DIR/secret.key"
    )

    @field_validator("edge_wheel")
    @classmethod
    def _check_edge_wheel(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.name.endswith("-py3-none-any.whl")
                                      and value.name.count("-") == 4):
            raise ValueError("edge_wheel must be a pure-Python wheel: NAME-VERSION-py3-none-any.whl")
        return value

    @field_validator("mqtt_url", "advertised_mqtt_url", "advertised_mqtts_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None:
            mqtt_endpoint(value)
        return value

    @field_validator("topic_root")
    @classmethod
    def _check_topic_root(cls, value: str) -> str:
        TopicScheme(value)  # raises ValueError with the reason
        return value

    @field_validator("share_group")
    @classmethod
    def _check_share_group(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_name(value, kind="share group")
            except Rejection as exc:
                raise ValueError(exc.message) from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"public URL {value!r} must look like http(s)://host[:port]")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> CloudSettings:
        for cert, key in (("ca_certfile", "ca_keyfile"), ("tls_certfile", "tls_keyfile"),
                          ("mqtt_certfile", "mqtt_keyfile")):
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"{cert} and {key} go together: set both or neither")
        if self.advertised_mqtts_url is not None and not self.advertised_mqtts_url.startswith(
            "mqtts://"
        ):
            raise ValueError("advertised_mqtts_url must be an mqtts:// URL")
        uses_tls = self.mqtt_url.startswith("mqtts://")
        if not uses_tls and (self.mqtt_certfile or self.mqtt_cafile):
            raise ValueError("mqtt_certfile and mqtt_cafile need an mqtts:// mqtt_url")
        if self.mqtt_certificate_login and self.mqtt_certfile is None:
            raise ValueError("mqtt_certificate_login needs mqtt_certfile and mqtt_keyfile")
        if self.function_timeout_seconds > self.function_max_timeout_seconds:
            raise ValueError("function_timeout_seconds may not exceed function_max_timeout_seconds")
        return self

    @model_validator(mode="after")
    def _fill_database_url(self) -> CloudSettings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'tether.db'}"
        sqlalchemy_url(self.database_url)  # refuse unknown schemes now, not at first query
        return self

    # -- derived ---------------------------------------------------------------------
    @property
    def store_url(self) -> str:
        assert self.database_url is not None  # filled by the validator
        return sqlalchemy_url(self.database_url)

    @property
    def limits(self) -> ShadowLimits:
        return ShadowLimits(
            max_state_bytes=self.max_state_bytes,
            max_depth=self.max_depth,
            max_client_token_bytes=self.max_client_token_bytes,
        )

    @property
    def topics(self) -> TopicScheme:
        return TopicScheme(self.topic_root)

    @property
    def node_mqtt_url(self) -> str:
        return self.advertised_mqtt_url or self.mqtt_url

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def bridge_secret_path(self) -> Path:
        return self.data_dir / "bridge.secret"

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def node_tls_url(self) -> str | None:
        """The broker URL for certificate nodes: advertised_mqtts_url, or an mqtts node URL."""
        if self.advertised_mqtts_url is not None:
            return self.advertised_mqtts_url
        return self.node_mqtt_url if self.node_mqtt_url.startswith("mqtts://") else None
