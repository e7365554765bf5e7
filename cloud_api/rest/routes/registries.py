"""``/v1/namespaces/{ns}/registries``: image registries; the password is sealed, never shown."""

from __future__ import annotations

from cloud_api.rest.routes.resources import plain_wire, resource_router
from cloud_api.store.models.resources import RegistryCreate
from schemas.resources import ResourceKind

router = resource_router(ResourceKind.REGISTRY, RegistryCreate, plain_wire)
