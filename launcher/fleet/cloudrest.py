"""The REST calls the fleet bench makes to the cloud, each timed (DESIGN §7).

Nodes are created through the bulk endpoint ``POST .../nodes:bulk`` (up to 1000 items a
request, an answer per item) when the cloud has it; a cloud that answers 404 or 405 there
predates it, and the nodes are then created one ``POST .../nodes`` at a time by 8
concurrent clients, as an operator's script would. ``/metrics`` is read for the count
of messages the bridge handled, which CPU time is divided by.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BULK_LIMIT = 1000
SINGLE_CLIENTS = 8
MESSAGES_IN = 'tether_bridge_messages_total{direction="in"}'


class RestError(RuntimeError):
    """The cloud answered a bench request with an error it cannot go on after."""


@dataclass
class Created:
    """How node creation went; ``path`` is ``bulk`` or ``single``."""

    seconds: float = 0.0
    path: str = "bulk"
    created: int = 0
    existing: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report


def _check(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise RestError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


class CloudRest:
    """One cloud's API with an admin token."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout, self._transport = timeout, transport  # a MockTransport in tests
        self._http = self._client()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self._timeout,
                                 transport=self._transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_namespace(self, namespace: str) -> None:
        response = await self._http.post("/v1/namespaces", json={"name": namespace})
        if response.status_code != 409:  # there already: fine
            _check(response, f"creating namespace {namespace}")

    async def create_nodes(
        self, namespace: str, names: list[str], *, labels: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> Created:
        started = time.perf_counter()
        result = Created()
        items = [{"name": name, "labels": labels} for name in names]
        for start in range(0, len(items), BULK_LIMIT):
            response = await self._http.post(f"/v1/namespaces/{namespace}/nodes:bulk",
                                             json={"items": items[start:start + BULK_LIMIT]})
            if response.status_code in (404, 405) and start == 0:
                result = await self._create_one_by_one(namespace, items, progress)
                break
            body = _check(response, "creating nodes in bulk").json()
            result.created += body.get("created", 0)
            result.existing += body.get("existing", 0)
            result.failed += body.get("failed", 0)
            result.errors += [f"{item.get('name')}: {item.get('message')}"
                              for item in body.get("items", []) if item.get("status") == "failed"]
            if progress is not None:
                progress(min(start + BULK_LIMIT, len(items)))
        result.seconds = time.perf_counter() - started
        del result.errors[10:]
        return result

    async def _create_one_by_one(
        self, namespace: str, items: list[dict[str, Any]], progress: Callable[[int], None] | None,
    ) -> Created:
        result, queue = Created(path="single"), list(reversed(items))

        async def client() -> None:
            async with self._client() as http:
                while queue:
                    item = queue.pop()
                    response = await http.post(f"/v1/namespaces/{namespace}/nodes", json=item)
                    if response.status_code == 201:
                        result.created += 1
                    elif response.status_code == 409:
                        result.existing += 1
                    else:
                        result.failed += 1
                        result.errors.append(f"{item['name']}: HTTP {response.status_code} "
                                             f"{response.text[:200]}")
                    if progress is not None:
                        progress(result.created + result.existing + result.failed)

        await asyncio.gather(*(client() for _ in range(SINGLE_CLIENTS)))
        return result

    async def create_app(self, namespace: str, app: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Seconds the request took, and the app as created (with its version)."""
        started = time.perf_counter()
        response = await self._http.post(f"/v1/namespaces/{namespace}/apps", json=app)
        seconds = time.perf_counter() - started
        return seconds, _check(response, f"creating app {app['name']}").json()

    async def update_app(self, namespace: str, app: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """``PUT .../apps/{name}``: seconds, and the app as stored (its new version)."""
        started = time.perf_counter()
        response = await self._http.put(f"/v1/namespaces/{namespace}/apps/{app['name']}", json=app)
        seconds = time.perf_counter() - started
        return seconds, _check(response, f"updating app {app['name']}").json()

    async def rollout(self, namespace: str, app: str) -> tuple[float, dict[str, Any]]:
        """Seconds ``GET .../apps/{app}/nodes`` took, and its answer."""
        started = time.perf_counter()
        response = await self._http.get(f"/v1/namespaces/{namespace}/apps/{app}/nodes")
        seconds = time.perf_counter() - started
        return seconds, _check(response, f"rollout status of {app}").json()

    async def messages_in(self) -> float | None:
        """Messages the bridge received so far (``/metrics``), or None if unreadable."""
        try:
            response = await self._http.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        total = 0.0  # a counter never incremented is not rendered
        for line in response.text.splitlines():
            if line.startswith(MESSAGES_IN):
                total += float(line.rsplit(" ", 1)[1])
        return total
