"""``/v1/namespaces/{ns}/certificates``: PEM certificate + key pairs, uploaded or generated.

``{"generate": {"commonName", "sans", "days", "selfSigned"}}`` makes a new key and a
self-signed certificate, or (``selfSigned: false``) one signed by the cloud's CA. The key
is sealed at rest and never shown; responses show subject, SANs and validity.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from cloud_api.rest.context import Context
from cloud_api.rest.routes.resources import resource_router
from cloud_api.services.certificates import certificate_wire
from cloud_api.store.models.resources import CertificateCreate
from schemas.resources import ResourceKind


def _wire(session: Session, context: Context, namespace: str, body: Any) -> dict[str, Any]:
    return certificate_wire(body, ca_dir=context.settings.ca_dir)


router = resource_router(ResourceKind.CERTIFICATE, CertificateCreate, _wire)
