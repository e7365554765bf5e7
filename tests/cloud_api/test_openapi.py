"""The OpenAPI document is valid and complete, and ``/docs`` works offline (local assets)."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute, iter_route_contexts
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from cloud_api.runtime import Cloud


def test_the_document_is_valid_openapi(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert [str(error) for error in OPENAPI_31_VALIDATOR.iter_errors(spec)] == []


def test_every_route_is_documented_with_its_errors(cloud: Cloud, anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    routes = [c for c in iter_route_contexts(cloud.app.routes)
              if isinstance(c.original_route, APIRoute) and c.original_route.include_in_schema]
    assert len(routes) > 20
    for context in routes:
        for method in context.methods or ():
            operation = spec["paths"][context.path_format][method.lower()]
            responses = operation["responses"]
            assert "500" in responses and "422" not in responses, (method, context.path_format)
            assert operation.get("tags"), (method, context.path_format)
            for code in ("400", "401", "403", "404"):
                if code in responses:
                    schema = responses[code]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}
            if "{" in context.path_format:
                assert "404" in responses
            if "security" in operation:
                assert {"401", "403"} <= set(responses)


def test_bodies_read_by_dependencies_are_documented(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    paths = spec["paths"]
    node_body = paths["/v1/namespaces/{namespace}/nodes"]["post"]["requestBody"]
    assert node_body["content"]["application/json"]["schema"]["$ref"].endswith("NodeCreate-Request")
    shadow = paths["/v1/namespaces/{namespace}/nodes/{node}/shadow"]["patch"]
    assert "requestBody" in shadow and {"409", "413", "415", "429"} <= set(shadow["responses"])
    assert "requestBody" in paths["/v1/namespaces/{namespace}/apps/{name}"]["put"]
    assert spec["components"]["schemas"]["Error"]["examples"]


def test_docs_use_only_local_assets_and_they_load(anonymous: httpx.Client) -> None:
    page = anonymous.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(url.startswith("/docs/assets/") for url in urls), urls
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for url in urls:
        asset = anonymous.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert anonymous.get("/redoc").status_code == 404
