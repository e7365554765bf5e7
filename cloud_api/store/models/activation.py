"""Activation and node credentials (DESIGN §7 ``init`` and ``POST /v1/activate``).

An operator asks for a node's install command; it carries a one-time activation token
(stored hashed, single use, expiring). The node exchanges it for its MQTT identity
``NS/NODE`` and a fresh password, whose hash replaces any earlier credential of the node.
The broker checks node passwords against ``NodeCredential`` (``services/mqtt_auth.py``).
A node that sends a CSR gets a client certificate instead (``cloud_api.security.pki``); every
certificate issued to a node is a ``NodeCertificate`` row, which is how the broker tells
a current certificate from a revoked one (the revoked list is the rows with
``revoked_at`` set; they outlive the node, so a deleted node's certificate stays refused).
"""

from __future__ import annotations

from pydantic import ConfigDict
from sqlalchemy import ForeignKeyConstraint, String
from sqlmodel import Field, SQLModel

from cloud_api.store.models.nodes import NodeMode


class ActivationToken(SQLModel, table=True):
    __tablename__ = "activation_tokens"
    __table_args__ = (
        ForeignKeyConstraint(["namespace", "node"], ["nodes.namespace", "nodes.name"]),
    )

    token_hash: str = Field(primary_key=True, max_length=64)
    namespace: str = Field(max_length=63, index=True)
    node: str = Field(max_length=63)
    mode: NodeMode = Field(sa_type=String(16))
    created_at: int
    expires_at: int
    used_at: int | None = None


class NodeCredential(SQLModel, table=True):
    """The one MQTT password a node has; its SHA-256 only (see ``cloud_api.security.credentials``)."""

    __tablename__ = "node_credentials"
    __table_args__ = (
        ForeignKeyConstraint(["namespace", "node"], ["nodes.namespace", "nodes.name"]),
    )

    namespace: str = Field(primary_key=True, max_length=63)
    node: str = Field(primary_key=True, max_length=63)
    # SHA-256, not a slow password hash: the password is 256 random bits, so there is
    # nothing to guess and the compare (constant-time) stays cheap at every connect.
    password_hash: str = Field(max_length=64)
    # bcrypt of the same password, for a broker that checks it itself (NATS: ``tether
    # broker nats-config``); None for credentials issued before it was kept.
    broker_password_hash: str | None = Field(default=None, max_length=60)
    created_at: int


class NodeCertificate(SQLModel, table=True):
    """A client certificate issued to a node; no foreign key, so it outlives the node."""

    __tablename__ = "node_certificates"

    serial: str = Field(primary_key=True, max_length=64)  # lower-case hex
    namespace: str = Field(max_length=63, index=True)
    node: str = Field(max_length=63, index=True)
    issued_at: int
    not_after: int
    revoked_at: int | None = Field(default=None, index=True)


# -- wire forms ------------------------------------------------------------------------
class InitResponse(SQLModel):
    """``GET .../nodes/{node}/init``: the install command and the token inside it."""

    command: str
    token: str
    expires_at: int = Field(serialization_alias="expiresAt")


class ActivationRequest(SQLModel):
    """``POST /v1/activate``: ``{"token", "csr"?}``."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    token: str = Field(max_length=256)
    csr: str | None = Field(default=None, max_length=16_384)


class MqttCredentials(SQLModel):
    url: str
    username: str
    password: str | None = None


class ActivationResponse(SQLModel):
    """With a CSR: ``ca`` and ``certificate`` and no password; without: a password."""

    namespace: str
    node: str
    mqtt: MqttCredentials
    ca: str | None = None
    certificate: str | None = None


class RenewalRequest(SQLModel):
    """``POST /v1/renew``: a fresh CSR, authenticated by the node's current certificate."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    csr: str = Field(max_length=16_384)
    certificate: str = Field(max_length=16_384)
    proof: str = Field(max_length=1024)


class RenewalResponse(SQLModel):
    ca: str
    certificate: str


class BrokerAuthRequest(SQLModel):
    """``POST /v1/broker/authenticate``, asked by a standalone broker at each connect."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    username: str = Field(max_length=256)
    password: str | None = Field(default=None, max_length=1024)
    certificate_serial: str | None = Field(
        default=None, max_length=64, alias="certificateSerial"
    )


class BrokerAuthResponse(SQLModel):
    allowed: bool
