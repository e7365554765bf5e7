"""``/docs`` renders the OpenAPI 3.1 document offline: every operation is listed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from launcher.stack import LocalStack


def test_docs_list_every_operation_with_no_request_leaving_the_machine(
    page: Page, stack: LocalStack, shoot: Callable[..., Path]
) -> None:
    spec = httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    operations = sum(len(methods) for methods in spec["paths"].values())
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(stack.api_url) else None)
    page.goto("/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(operations)
    expect(page.locator(".opblock-summary-path", has_text="/v1/namespaces/{namespace}/nodes/{node}/shadow").first).to_be_visible()
    assert not outside, outside
    shoot(page, "10-api-docs", full_page=False)
