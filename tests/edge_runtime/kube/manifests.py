"""Small manifest builders shared by the fake API server's tests, and a raw request.

``send`` goes through the real client's transport but skips its typed API methods, whose
pydantic models refuse some bad bodies before they leave the process: it is how the tests
show what the *server* says about them.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient

NS = "tether-edge"
MANAGED = {"app.kubernetes.io/managed-by": "tether"}
APPLY = "application/apply-patch+yaml"


def container(name: str = "app", image: str = "nginx:1.27", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **extra}


def deployment(
    name: str = "web", *, containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None, replicas: int | None = 1, **spec: Any,
) -> dict[str, Any]:
    pod_spec = {"containers": containers or [container()], **spec.pop("pod", {})}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {**MANAGED, **(labels or {})}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            **spec,
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def config_map(
    name: str, labels: dict[str, str] | None = None, *, namespace: str | None = None,
    **data: str,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def namespace(name: str = NS) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def send(
    api_client: ApiClient, method: str, path: str, body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """(status code, decoded JSON body) of one request, errors included."""
    response = api_client.call_api(
        method, api_client.configuration.host + path,
        header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
    )
    return response.status, json.loads(response.read())
