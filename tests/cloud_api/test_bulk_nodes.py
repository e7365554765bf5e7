"""``POST .../nodes:bulk``: many nodes in one request, each item answered on its own."""

from __future__ import annotations

import httpx

NS = "/v1/namespaces/default"


def test_bulk_creates_nodes_with_their_matched_apps_and_reports_each_item(
    api: httpx.Client,
) -> None:
    app = {"name": "web", "selector": "env=prod", "services": [{"name": "main", "image": "nginx:1"}]}
    assert api.post(f"{NS}/apps", json=app).status_code == 201
    assert api.post(f"{NS}/nodes", json={"name": "old", "labels": {"env": "dev"}}).status_code == 201
    items = [
        {"name": "a", "labels": {"env": "prod"}},
        {"name": "b"},
        {"name": "old", "labels": {"env": "prod"}},  # exists: left as it is
        {"name": "Bad_Name"},
        {"name": "c", "labels": {"-x": "y"}},
        {"name": "a"},  # listed twice
        "not an object",
        {"name": "d", "mode": "kube", "description": "rack 4"},
    ]
    response = api.post(f"{NS}/nodes:bulk", json={"items": items})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["existing"], result["failed"]) == (3, 1, 4)
    statuses = [(item["name"], item["status"]) for item in result["items"]]
    assert statuses == [("a", "created"), ("b", "created"), ("old", "exists"),
                        ("Bad_Name", "failed"), ("c", "failed"), ("a", "failed"),
                        ("items[6]", "failed"), ("d", "created")]
    messages = [item.get("message") for item in result["items"]]
    assert messages[0] is None and messages[2] is None
    assert "Bad_Name" in messages[3] and "label key" in messages[4]
    assert messages[5] == "listed twice" and "object" in messages[6]

    shadow = api.get(f"{NS}/nodes/a/shadow").json()
    assert shadow["version"] == 0 and shadow["state"]["desired"] == {"apps": {"web": "1"}}
    assert api.get(f"{NS}/nodes/b/shadow").json()["state"]["desired"] == {"apps": {}}
    assert api.get(f"{NS}/nodes/old").json()["labels"] == {"env": "dev"}  # untouched
    d = api.get(f"{NS}/nodes/d").json()
    assert (d["mode"], d["description"], d["online"]) == ("kube", "rack 4", False)

    again = api.post(f"{NS}/nodes:bulk", json={"items": items[:2]}).json()
    assert (again["created"], again["existing"]) == (0, 2)


def test_bulk_refuses_a_bad_body_whole(api: httpx.Client) -> None:
    for body in ({"items": []}, {"items": [{"name": f"n{i}"} for i in range(1001)]}, {"nodes": []}):
        response = api.post(f"{NS}/nodes:bulk", json=body)
        assert response.status_code == 400, body
    assert api.post("/v1/namespaces/nowhere/nodes:bulk", json={"items": [{"name": "a"}]}).status_code == 404
