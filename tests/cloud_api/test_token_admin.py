"""Token administration: list and describe never show a secret; revocation takes effect
on the very next request; the last admin token cannot be revoked."""

from __future__ import annotations

import httpx


def test_create_list_describe_revoke(api: httpx.Client, api_url: str) -> None:
    issued = api.post("/v1/tokens", json={"role": "editor", "namespaces": ["default"],
                                          "description": "ci"})
    assert issued.status_code == 201
    secret, token_id = issued.json()["token"], issued.json()["id"]
    listed = api.get("/v1/tokens").json()
    assert [t["id"] for t in listed][-1] == token_id
    assert all("token" not in t and "token_hash" not in t for t in listed)
    described = api.get(f"/v1/tokens/{token_id}").json()
    assert (described["role"], described["namespaces"], described["revokedAt"]) == (
        "editor", ["default"], None)
    assert secret not in api.get(f"/v1/tokens/{token_id}").text
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {secret}"}) as editor:
        assert editor.get("/v1/namespaces/default/nodes").status_code == 200
        assert editor.get("/v1/tokens").status_code == 403  # admin only
        revoked = api.post(f"/v1/tokens/{token_id}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
        refused = editor.get("/v1/namespaces/default/nodes")
        assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    assert api.get("/v1/tokens/999").status_code == 404
    audit = api.get("/v1/audit", params={"kind": "token"}).json()["items"]
    assert [(e["action"], e["name"]) for e in reversed(audit)] == [
        ("create", str(token_id)), ("revoke", str(token_id))]


def test_the_last_admin_token_cannot_be_revoked(api: httpx.Client) -> None:
    admin_id = api.get("/v1/tokens").json()[0]["id"]
    refused = api.post(f"/v1/tokens/{admin_id}/revoke")
    assert refused.status_code == 409 and "last admin" in refused.json()["message"]
    other = api.post("/v1/tokens", json={"role": "admin"}).json()
    assert api.post(f"/v1/tokens/{admin_id}/revoke").status_code == 200
    assert api.get("/v1/tokens").status_code == 401  # the caller's own token, revoked
    with httpx.Client(base_url=str(api.base_url),
                      headers={"Authorization": f"Bearer {other['token']}"}) as second:
        assert second.get("/v1/tokens").status_code == 200


def test_token_lists_page(api: httpx.Client) -> None:
    ids = [api.post("/v1/tokens", json={"role": "viewer"}).json()["id"] for _ in range(4)]
    first = api.get("/v1/tokens", params={"limit": 3})
    second = api.get("/v1/tokens", params={"limit": 3, "continue": first.headers["X-Continue"]})
    assert "X-Continue" not in second.headers
    seen = [t["id"] for t in first.json() + second.json()]
    assert seen[1:] == ids and len(seen) == 5
