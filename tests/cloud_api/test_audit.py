"""The audit trail: every REST write recorded once, with who, what, versions and status;
refused writes marked; dry runs and reads not recorded; namespaced tokens see their own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cloud_api.runtime import Cloud
from cloud_api.services.auditing import AuditRetention, attach, draft_of, prune, record
from cloud_api.store.models import AuditEntry, Namespace

NS = "/v1/namespaces/default"
APP = {"name": "web", "selector": "", "services": [{"name": "main", "image": "nginx:1"}]}


def entries(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def count_rows(cloud: Cloud) -> int:
    with cloud.store.session() as session:
        return int(session.exec(select(func.count()).select_from(AuditEntry)).one()[0])


def test_each_write_is_recorded_once_with_who_what_and_versions(api: httpx.Client,
                                                                 cloud: Cloud) -> None:
    assert api.post(f"{NS}/apps", json=APP).status_code == 201
    changed = {**APP, "services": [{"name": "main", "image": "nginx:2"}]}
    assert api.put(f"{NS}/apps/web", json=changed).status_code == 200
    assert api.post(f"{NS}/nodes", json={"name": "n1"}).status_code == 201
    assert api.patch(f"{NS}/nodes/n1/shadow",
                     json={"state": {"desired": {"fan": 1}}}).status_code == 200
    assert api.delete(f"{NS}/apps/web").status_code == 204
    api.get(f"{NS}/apps")  # reads are not recorded
    got = entries(api)
    shown = [(e["action"], e["kind"], e["namespace"], e["name"], e["beforeVersion"],
              e["afterVersion"], e["status"], e["outcome"]) for e in reversed(got)]
    assert shown == [
        ("create", "app", "default", "web", None, "1", 201, "done"),
        ("replace", "app", "default", "web", "1", "2", 200, "done"),
        ("create", "node", "default", "n1", None, None, 201, "done"),
        ("update", "shadow", "default", "n1", "0", "1", 200, "done"),
        ("delete", "app", "default", "web", "2", None, 204, "done"),
    ]
    assert {e["role"] for e in got} == {"admin"} and len({e["tokenId"] for e in got}) == 1
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in got)
    assert count_rows(cloud) == 5


def test_minting_an_activation_token_is_audited(api: httpx.Client) -> None:
    """``GET .../init`` is a read in form and a write in effect: it mints a credential."""
    assert api.post(f"{NS}/nodes", json={"name": "n1"}).status_code == 201
    assert api.get(f"{NS}/nodes/n1/init").status_code == 200
    assert api.get(f"{NS}/nodes/n1").status_code == 200  # a plain read: not audited
    got = [(e["action"], e["kind"], e["name"], e["status"]) for e in entries(api)]
    assert got == [("create", "activation", "n1", 200), ("create", "node", "n1", 201)]


def test_refused_writes_are_recorded_and_marked(api: httpx.Client, anonymous: httpx.Client) -> None:
    assert api.post(f"{NS}/apps", json={**APP, "selector": "a in ("}).status_code == 400
    assert api.delete(f"{NS}/configs/nothing").status_code == 404
    assert anonymous.post(f"{NS}/nodes", json={"name": "x"}).status_code == 401
    got = entries(api)
    shown = [(e["action"], e["kind"], e["name"], e["status"], e["outcome"], e["tokenId"] is None)
             for e in reversed(got)]
    assert shown == [("create", "app", "web", 400, "refused", False),
                     ("delete", "config", "nothing", 404, "refused", False),
                     ("create", "node", None, 401, "refused", True)]


def test_a_failed_commit_leaves_no_done_row(api: httpx.Client) -> None:
    """A write refused inside its transaction (409: the name is taken) is recorded as
    refused, never as done: the row of the transaction went with it."""
    assert api.post(f"{NS}/nodes", json={"name": "n1"}).status_code == 201
    assert api.post(f"{NS}/nodes", json={"name": "n1"}).status_code == 409
    outcomes = [(e["status"], e["outcome"]) for e in reversed(entries(api, kind="node"))]
    assert outcomes == [(201, "done"), (409, "refused")]


def test_dry_run_checks_stores_nothing_and_records_nothing(api: httpx.Client,
                                                           cloud: Cloud) -> None:
    response = api.post(f"{NS}/apps", params={"dryRun": "All"}, json=APP)
    assert response.status_code == 201, response.text
    assert response.json()["version"] == "1"
    assert api.get(f"{NS}/apps/web").status_code == 404
    bad = api.post(f"{NS}/apps", params={"dryRun": "All"}, json={**APP, "selector": "a in ("})
    assert bad.status_code == 400
    assert api.post(f"{NS}/nodes", params={"dryRun": "maybe"}, json={"name": "x"}).status_code == 400
    assert api.post(f"{NS}/nodes", params={"dryRun": "All"}, json={"name": "x"}).status_code == 201
    assert api.get(f"{NS}/nodes/x").status_code == 404
    activation = api.post("/v1/activate", params={"dryRun": "All"}, json={"token": "x"})
    assert activation.status_code == 400 and "dryRun" in activation.json()["message"]
    assert [e["status"] for e in entries(api)] == [400]  # only the bad dryRun value
    assert count_rows(cloud) == 1


def test_a_namespaced_token_sees_only_its_namespaces(api: httpx.Client, api_url: str) -> None:
    assert api.post("/v1/namespaces", json={"name": "other"}).status_code == 201
    assert api.post("/v1/namespaces/other/nodes", json={"name": "o1"}).status_code == 201
    assert api.post(f"{NS}/nodes", json={"name": "d1"}).status_code == 201
    issued = api.post("/v1/tokens", json={"role": "viewer", "namespaces": ["default"]}).json()
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {issued['token']}"}) as viewer:
        seen = entries(viewer)
        assert [(e["namespace"], e["name"]) for e in seen] == [("default", "d1")]
        assert viewer.get("/v1/audit", params={"namespace": "other"}).status_code == 403
    everything = entries(api)
    assert [(e["kind"], e["name"]) for e in reversed(everything)] == [
        ("namespace", "other"), ("node", "o1"), ("node", "d1"), ("token", str(issued["id"]))]
    assert [e["name"] for e in entries(api, namespace="other")] == ["o1"]
    assert [e["name"] for e in entries(api, kind="token")] == [str(issued["id"])]


def test_filters_and_paging(api: httpx.Client, cloud: Cloud) -> None:
    for index in range(7):
        assert api.post(f"{NS}/nodes", json={"name": f"n{index}"}).status_code == 201
    seen, token = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"continue": token} if token else {})}
        body = api.get("/v1/audit", params=params).json()
        seen += [e["name"] for e in body["items"]]
        token = body["continue"]
        if token is None:
            break
    assert seen == [f"n{index}" for index in reversed(range(7))]
    admin_id = entries(api)[0]["tokenId"]
    assert len(entries(api, token=admin_id)) == 7 and entries(api, token=admin_id + 99) == []
    assert entries(api, since="2100-01-01T00:00:00Z") == []
    assert len(entries(api, since="2020-01-01")) == 7
    assert api.get("/v1/audit", params={"since": "yesterday"}).status_code == 400
    assert api.get("/v1/audit", params={"continue": "garbage"}).status_code == 400


def test_retention_prunes_beyond_the_bound(cloud: Cloud) -> None:
    draft = draft_of("POST", f"{NS}/nodes", None, {})
    retention = AuditRetention(max_rows=10, max_age_days=1)
    with cloud.store.connect() as connection:
        for index in range(30):
            record(connection, draft, status=201, outcome="done", now=1_000_000 + index,
                   retention=AuditRetention())
        record(connection, draft, status=201, outcome="done", now=1_000_000 + 2 * 86_400,
               retention=AuditRetention())
        removed = prune(connection, newest_id=31, now=1_000_000 + 2 * 86_400, retention=retention)
        connection.commit()
    assert removed == 30  # 21 beyond 10 rows, and the rest older than a day
    assert count_rows(cloud) == 1


def test_the_row_commits_with_the_write_or_not_at_all(cloud: Cloud) -> None:
    """``attach``: the entry is inserted in the write's transaction, so a commit that fails
    (here a duplicate namespace, refused at flush, after the entry was inserted) takes the
    entry with it, and a commit that succeeds keeps exactly one."""
    for name, fails in (("default", True), ("fresh", False)):
        draft = draft_of("POST", "/v1/namespaces", "/v1/namespaces", {})
        draft.name = name
        with cloud.store.session() as session:
            attach(session, draft, now=lambda: 1_800_000_000, retention=AuditRetention())
            session.add(Namespace(name=name, created_at=1))
            if fails:
                with pytest.raises(IntegrityError):
                    session.commit()
                session.rollback()
            else:
                session.commit()
                session.commit()  # a second commit records nothing more
        assert draft.recorded is not fails
    with cloud.store.session() as session:
        rows = session.exec(select(AuditEntry.name, AuditEntry.outcome)).all()
    assert [tuple(row) for row in rows] == [("fresh", "done")]
