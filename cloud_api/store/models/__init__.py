"""The cloud's data, in the FastAPI template's families: ``XBase`` (shared fields),
``XCreate`` (what a client sends), ``X(table=True)`` (what is stored), ``XPublic`` (what
the API returns). Importing this package registers every table on ``SQLModel.metadata``.
"""

from __future__ import annotations

from cloud_api.store.models.activation import (
    ActivationRequest,
    ActivationResponse,
    ActivationToken,
    BrokerAuthRequest,
    BrokerAuthResponse,
    InitResponse,
    MqttCredentials,
    NodeCertificate,
    NodeCredential,
    RenewalRequest,
    RenewalResponse,
)
from cloud_api.store.models.audit import AuditEntry
from cloud_api.store.models.events import Event
from cloud_api.store.models.history import ShadowRevision
from cloud_api.store.models.matching import PendingMatch
from cloud_api.store.models.nodes import (
    Namespace,
    NamespaceCreate,
    NamespacePublic,
    Node,
    NodeBulkCreate,
    NodeBulkItem,
    NodeBulkResult,
    NodeCreate,
    NodeMode,
    NodePublic,
    NodeUpdate,
)
from cloud_api.store.models.resources import Resource, ResourceVersion
from cloud_api.store.models.rollouts import Rollout, RolloutNode
from cloud_api.store.models.shadows import Shadow
from cloud_api.store.models.tokens import (
    ApiToken,
    ApiTokenCreate,
    ApiTokenIssued,
    ApiTokenPublic,
    Role,
)

__all__ = [
    "ActivationRequest",
    "ActivationResponse",
    "ActivationToken",
    "ApiToken",
    "ApiTokenCreate",
    "ApiTokenIssued",
    "ApiTokenPublic",
    "AuditEntry",
    "BrokerAuthRequest",
    "BrokerAuthResponse",
    "Event",
    "InitResponse",
    "MqttCredentials",
    "Namespace",
    "NamespaceCreate",
    "NamespacePublic",
    "Node",
    "NodeBulkCreate",
    "NodeBulkItem",
    "NodeBulkResult",
    "NodeCertificate",
    "NodeCreate",
    "NodeCredential",
    "NodeMode",
    "NodePublic",
    "NodeUpdate",
    "PendingMatch",
    "RenewalRequest",
    "RenewalResponse",
    "Resource",
    "ResourceVersion",
    "Role",
    "Rollout",
    "RolloutNode",
    "Shadow",
    "ShadowRevision",
]
