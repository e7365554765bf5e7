"""Resource models: what the cloud accepts and the edge parses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.resources import App, AppType, Config, ResourceItem, ResourceKind, Volume

WEB: dict[str, Any] = {
    "name": "web",
    "services": [
        {
            "name": "main",
            "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "env": {"MODE": "edge"},
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"}],
        }
    ],
    "volumes": [{"name": "conf", "config": {"name": "nginx-conf", "version": "3"}}],
    "registries": [{"name": "private", "version": "1"}],
}


def test_an_app_round_trips_in_camel_case() -> None:
    app = App.model_validate(WEB)
    assert app.services[0].volume_mounts[0].mount_path == "/etc/nginx/conf.d"
    assert App.model_validate(app.wire()) == app
    assert [(k, r.name) for k, r in app.references()] == [
        (ResourceKind.CONFIG, "nginx-conf"),
        (ResourceKind.REGISTRY, "private"),
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Web"},
        {"services": []},
        {"services": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
        {"services": [{"name": "a", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]},
        {"volumes": [{"name": "v", "config": {"name": "c", "version": "1"}, "emptyDir": {}}]},
        {"volumes": [{"name": "v"}]},
        {"type": "function"},
        {"unknown": 1},
        {"services": [{"name": "a", "image": "x", "env": {"1BAD": "v"}}]},
        {"services": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]},
    ],
)
def test_invalid_apps_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        App.model_validate({**WEB, **change})


def test_function_services_need_a_handler() -> None:
    app = App.model_validate(
        {"name": "fn", "type": "function", "services": [{"name": "sum", "handler": "main.handle"}]}
    )
    assert app.type is AppType.FUNCTION


def test_volume_knows_what_it_pins() -> None:
    assert Volume.model_validate({"name": "v", "emptyDir": {}}).pinned() is None


def test_resource_items_parse_their_value() -> None:
    item = ResourceItem.model_validate(
        {"kind": "config", "name": "c", "version": "7", "value": {"name": "c", "data": {"a.txt": "hi"}}}
    )
    assert item.parsed() == Config(name="c", data={"a.txt": "hi"})
    with pytest.raises(ValidationError):
        ResourceItem.model_validate({"kind": "bogus", "name": "c", "version": "1"})
