"""Tenancy over every route of the app: a viewer of namespace ``a`` can read ``a`` and
nothing else; it can neither read, list, change nor infer anything in namespace ``b``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from cloud_api.runtime import Cloud

MARK = "zz-b-only"  # every name made in ``b``: no answer to the viewer may hold it


def routes_of(cloud: Cloud) -> list[tuple[str, str]]:
    """Every (path, method) the app serves, from its route table as OpenAPI publishes it
    (FastAPI 0.165 nests included routers, so ``app.routes`` alone is not flat)."""
    paths = cloud.app.openapi()["paths"]
    return sorted((path, method.upper()) for path, item in paths.items() for method in item)


@pytest.fixture
def tenants(cloud: Cloud, api: httpx.Client, api_url: str) -> Iterator[httpx.Client]:
    for ns in ("a", "b"):
        assert api.post("/v1/namespaces", json={"name": ns}).status_code == 201
    for ns, name in (("a", "visible"), ("b", MARK)):
        base = f"/v1/namespaces/{ns}"
        api.post(f"{base}/nodes", json={"name": name, "labels": {"x": "y"}})
        for kind in ("configs", "secrets"):
            assert api.post(f"{base}/{kind}", json={"name": name, "data": {"k": MARK}}).status_code == 201
        api.post(f"{base}/registries", json={"name": name, "address": "r.example"})
        api.post(f"{base}/certificates", json={"name": name, "generate": {"commonName": "c"}})
        app = {"name": name, "selector": "x=y", "services": [{"name": "s", "image": "i"}]}
        assert api.post(f"{base}/apps", json=app).status_code == 201
    issued = api.post("/v1/tokens", json={"role": "viewer", "namespaces": ["a"]}).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as viewer:
        yield viewer


NEEDS_QUERY = {"/v1/namespaces/{namespace}/nodes/{node}/logs"}  # ?app= is required


def fill(path: str, namespace: str, name: str) -> str:
    path = path.replace("{namespace}", namespace)
    return re.sub(r"\{[a-z_]+\}", name, path)


def snapshot(api: httpx.Client) -> list[str]:
    kinds = ("nodes", "apps", "configs", "secrets", "certificates", "registries")
    out = [api.get(f"/v1/namespaces/{ns}/{kind}").text for kind in kinds for ns in "ab"]
    return out + [api.get(f"/v1/namespaces/b/nodes/{MARK}/shadow").text]


def test_a_viewer_sees_only_its_namespace_and_only_reads(
    cloud: Cloud, api: httpx.Client, tenants: httpx.Client
) -> None:
    viewer = tenants
    before = snapshot(api)
    routes = routes_of(cloud)
    assert any("/apps/" in path for path, _ in routes) and len(routes) > 20
    body = {"name": "new", "data": {}}
    for path, method in routes:
        if "{namespace}" in path:
            # namespace b: one answer, whether the object exists or not, and no change
            answers = {
                (r.status_code, r.text.replace(name, "NAME"))
                for name in (MARK, "absent")
                if (r := viewer.request(method, fill(path, "b", name), json=body))
            }
            assert len(answers) == 1, (method, path, answers)
            ((code, text),) = answers
            assert 400 <= code < 500 and MARK not in text, (method, path, code, text)
            # namespace a: reads work, writes are refused
            own = viewer.request(method, fill(path, "a", "visible"), json=body)
            if method == "GET":  # init: 403; a read that needs a query parameter: 400
                allowed = (200, 403, 404, 400) if path in NEEDS_QUERY else (200, 403, 404)
                assert own.status_code in allowed, (path, own.text)
            else:  # 403, or 400 where a route parses its body first: never a change
                assert own.status_code in (400, 403), (method, path, own.text)
        else:
            other = viewer.request(method, path.replace("{", "").replace("}", ""), json=body)
            assert MARK not in other.text, (method, path)
            if method not in ("GET", "HEAD"):
                assert other.status_code >= 400 or path.startswith("/v1/broker"), (method, path)
    assert snapshot(api) == before


def test_resource_routes_refuse_before_reading_the_body(
    cloud: Cloud, tenants: httpx.Client
) -> None:
    for kind in ("apps", "configs", "secrets", "certificates", "registries"):
        for method, path in (("POST", ""), ("PUT", "/x"), ("DELETE", "/x")):
            response = tenants.request(method, f"/v1/namespaces/b/{kind}{path}", content=b"{bad")
            assert response.status_code == 403, (method, kind, response.text)
        assert tenants.get(f"/v1/namespaces/a/{kind}").status_code == 200
        assert tenants.get(f"/v1/namespaces/b/{kind}").status_code == 403
