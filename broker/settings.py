"""Settings of the embedded broker, read from arguments or ``TETHER_BROKER_*`` variables.

One explicit settings object is handed to :class:`broker.embedded.EmbeddedBroker` (never
read at import time), so tests build their own with ``port=0`` and the CLI builds one
from its flags, with the environment filling what the flags leave out.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.names import parse_node_identity
from schemas.topics import DEFAULT_ROOT, TopicScheme

DEFAULT_CLOUD_USERNAME = "tether-cloud"
MIB = 1024 * 1024


class BrokerSettings(BaseSettings):
    """Where the broker listens, which topic root it guards, and who decides passwords."""

    model_config = SettingsConfigDict(env_prefix="TETHER_BROKER_", extra="forbid")

    host: str = "127.0.0.1"
    """Address to bind (an IPv4 address or a host name)."""
    port: int = Field(default=1883, ge=0, le=65535)
    """TCP port; 0 picks a free port, reported by ``EmbeddedBroker.port`` after start."""
    topic_root: str = DEFAULT_ROOT
    """Root of every Tether topic (DESIGN §4); clients get nothing outside it."""
    cloud_username: str = DEFAULT_CLOUD_USERNAME
    """Identity of the cloud bridge: may publish and subscribe anywhere under the root."""
    auth_url: str | None = None
    """The cloud's ``POST /v1/broker/authenticate`` URL that checks MQTT passwords."""
    auth_token: str | None = None
    """Bearer token the broker presents to ``auth_url``."""

    max_packet_bytes: int = Field(default=8 * MIB, ge=64 * 1024)
    """Largest field a client may send (in practice: a PUBLISH payload). amqtt has no
    limit of its own; a larger packet closes that client's connection."""
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    """A TCP connection that has not sent a complete CONNECT by then is closed."""
    session_expiry_seconds: int | None = Field(default=24 * 3600, ge=1)
    """A disconnected persistent session (and its queued QoS 1 messages) is dropped
    after this long; None keeps it until the broker stops."""

    # -- TLS: a second listener; its client certificate's CN is the MQTT identity ------------
    tls_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the TLS listener (0: any free port); None: no TLS listener."""
    certfile: Path | None = None
    """The broker's server certificate (PEM), issued by the cloud's CA."""
    keyfile: Path | None = None
    """Its private key (PEM)."""
    cafile: Path | None = None
    """The CA that client certificates must chain to (the cloud's CA)."""
    require_client_cert: bool = True
    """mTLS: refuse a TLS client without a certificate. False lets password clients use
    TLS too (a client that does present a certificate is still held to its CN)."""
    recheck_seconds: float | None = Field(default=60.0, gt=0)
    """Connected clients are re-authenticated this often (revocation reaches a broker that
    is not in the cloud's process); None: only at connect."""

    @field_validator("topic_root")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        TopicScheme(root=value)  # raises ValueError with a readable message
        return value

    @field_validator("cloud_username")
    @classmethod
    def _cloud_is_not_a_node(cls, value: str) -> str:
        if not value or parse_node_identity(value) is not None:
            raise ValueError(
                f"cloud username {value!r} must be non-empty and must not look like a node "
                "identity NS/NODE"
            )
        return value

    @model_validator(mode="after")
    def _token_goes_with_url(self) -> BrokerSettings:
        if self.auth_token is not None and self.auth_url is None:
            raise ValueError("auth_token is set but auth_url is not: set both or neither")
        return self

    @model_validator(mode="after")
    def _tls_files_with_port(self) -> BrokerSettings:
        if self.tls_port is not None:
            missing = [n for n in ("certfile", "keyfile", "cafile") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"tls_port needs {', '.join(missing)}")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_port is not None

    @property
    def topic_scheme(self) -> TopicScheme:
        return TopicScheme(root=self.topic_root)
