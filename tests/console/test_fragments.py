"""The console's server side without a browser: the token guards every fragment as it
guards the API, unchanged panels are 304, errors are panels, secrets stay sealed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_api.runtime import Cloud
from cloud_api.settings import CloudSettings
from tests.cloud_api.conftest import admin_token, serving


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    settings = CloudSettings(data_dir=tmp_path / "data",
                             database_url=f"sqlite:///{tmp_path / 'tether.db'}")
    with Cloud(settings) as opened:
        yield opened


@pytest.fixture
def url(cloud: Cloud) -> Iterator[str]:
    with serving(cloud.app) as base:
        yield base


def client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=10)


def test_shells_are_public_and_hold_no_data_but_fragments_need_the_token(
    cloud: Cloud, url: str
) -> None:
    cloud.create_node("secret-node-name")
    with client(url, None) as anonymous:
        shell = anonymous.get("/ui/ns/default")
        assert shell.status_code == 200 and 'hx-get="/ui/f/ns/default/overview"' in shell.text
        assert "secret-node-name" not in shell.text
        assert anonymous.get("/ui/f/ns/default/nodes").status_code == 401
        assert anonymous.get("/", follow_redirects=False).headers["location"] == "/ui/"
    with client(url, admin_token(cloud)) as admin:
        assert "secret-node-name" in admin.get("/ui/f/ns/default/nodes").text


def test_an_unchanged_panel_is_a_304_and_a_changed_one_is_not(cloud: Cloud, url: str) -> None:
    with client(url, admin_token(cloud)) as admin:
        first = admin.get("/ui/f/ns/default/overview")
        tag = first.headers["etag"]
        again = admin.get("/ui/f/ns/default/overview", headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        cloud.create_node("n1")
        changed = admin.get("/ui/f/ns/default/overview", headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_errors_are_panels_with_their_status(cloud: Cloud, url: str) -> None:
    with client(url, admin_token(cloud)) as admin:
        missing = admin.get("/ui/f/ns/default/nodes/nope")
        assert missing.status_code == 404 and "node default/nope not found" in missing.text
        issued = admin.post("/v1/tokens", json={"role": "viewer", "namespaces": ["default"]})
        viewer = issued.json()["token"]
        admin.post("/v1/namespaces", json={"name": "other"}).raise_for_status()
    with client(url, viewer) as scoped:
        refused = scoped.get("/ui/f/ns/other/overview")
        assert refused.status_code == 403 and "may not access namespace" in refused.text
        listed = scoped.get("/ui/f/namespaces").text
        assert "/ui/ns/default" in listed and "/ui/ns/other" not in listed


def test_a_secret_shows_its_keys_never_its_values(cloud: Cloud, url: str) -> None:
    with client(url, admin_token(cloud)) as admin:
        admin.put("/v1/namespaces/default/secrets/db",
                  json={"name": "db", "data": {"password": "hunter2-value"}}).raise_for_status()
        page = admin.get("/ui/f/ns/default/configs").text
    assert "password" in page and "hunter2-value" not in page
