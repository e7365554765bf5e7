"""A stateful fake Kubernetes API server for tests, owned by the project.

No cluster runs where Tether's tests run, yet the edge's kube backend must be tested with
the real ``kubernetes`` client. This package serves enough of the API server over real
HTTP on loopback for that client to work unchanged -- CRUD, label/field selectors,
merge/strategic/JSON patches, server-side apply with field ownership, discovery -- and is
stricter than a cluster where it matters: every stored object is validated against the
Kubernetes OpenAPI schema in strict mode (``validating``).

Modules, by what they hold: ``resources`` (the type table), ``routing`` (paths),
``discovery`` (discovery documents), ``selectors``, ``fieldpaths`` and ``ownership``
(managedFields, apply), ``merging`` (patch formats), ``validating``, ``statuses``
(errors), ``store``, ``server`` (HTTP), ``cluster`` (``FakeKube``) and ``fixtures``.
"""

from __future__ import annotations

from tests.fake_kube.cluster import FakeKube
from tests.fake_kube.server import RequestRecord

__all__ = ["FakeKube", "RequestRecord"]
