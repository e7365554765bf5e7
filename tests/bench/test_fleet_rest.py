"""The fleet bench's REST calls: nodes in bulk (1000 a request, per-item answers) and the
fallback to one request per node when the cloud has no bulk endpoint."""

from __future__ import annotations

import asyncio
import json

import httpx

from launcher.fleet.cloudrest import CloudRest

NAMES = [f"n{i:04d}" for i in range(2500)]


def test_nodes_in_bulk_a_thousand_at_a_time() -> None:
    sizes: list[int] = []

    def bulk(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/namespaces/ns/nodes:bulk"
        assert request.headers["authorization"] == "Bearer t"
        items = json.loads(request.content)["items"]
        sizes.append(len(items))
        answers = [{"name": i["name"], "status": "created"} for i in items]
        if items[0]["name"] == "n0000":  # one that exists, one that fails
            answers[0] = {"name": "n0000", "status": "exists"}
            answers[1] = {"name": "n0001", "status": "failed", "message": "bad label"}
        created = sum(a["status"] == "created" for a in answers)
        return httpx.Response(200, json={"created": created, "existing": int(created < len(items)),
                                         "failed": int(created < len(items)), "items": answers})

    done: list[int] = []

    async def run() -> None:
        rest = CloudRest("http://cloud", "t", transport=httpx.MockTransport(bulk))
        result = await rest.create_nodes("ns", NAMES, labels={"a": "b"}, progress=done.append)
        await rest.aclose()
        assert (result.path, result.created, result.existing, result.failed) == ("bulk", 2498, 1, 1)
        assert result.errors == ["n0001: bad label"]

    asyncio.run(run())
    assert sizes == [1000, 1000, 500] and done == [1000, 2000, 2500]


def test_without_a_bulk_endpoint_one_request_per_node() -> None:
    seen: list[str] = []

    def single(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":bulk"):
            return httpx.Response(404, json={"detail": "Not Found"})
        name = json.loads(request.content)["name"]
        seen.append(name)
        return httpx.Response(409 if name == "n0007" else 201, json={"name": name})

    async def run() -> None:
        rest = CloudRest("http://cloud", "t", transport=httpx.MockTransport(single))
        result = await rest.create_nodes("ns", NAMES[:50], labels={})
        await rest.aclose()
        assert (result.path, result.created, result.existing, result.failed) == ("single", 49, 1, 0)

    asyncio.run(run())
    assert sorted(seen) == NAMES[:50]
