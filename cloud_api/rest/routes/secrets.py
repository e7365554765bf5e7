"""``/v1/namespaces/{ns}/secrets``: like configs, but sealed at rest; REST shows key names only.

The values leave the cloud only in ``resources/get`` answers to matched nodes.
"""

from __future__ import annotations

from cloud_api.rest.routes.resources import plain_wire, resource_router
from cloud_api.store.models.resources import SecretCreate
from schemas.resources import ResourceKind

router = resource_router(ResourceKind.SECRET, SecretCreate, plain_wire)
