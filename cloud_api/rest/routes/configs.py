"""``/v1/namespaces/{ns}/configs``: key/value data (and function code) that apps mount.

A config's new version re-pins and bumps every app that mounts it (``services.resources``).
"""

from __future__ import annotations

from cloud_api.rest.routes.resources import plain_wire, resource_router
from cloud_api.store.models.resources import ConfigCreate
from schemas.resources import ResourceKind

router = resource_router(ResourceKind.CONFIG, ConfigCreate, plain_wire)
