"""``CloudSettings``: defaults derived from the data dir, URLs checked, environment read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud_api.settings import CloudSettings, mqtt_endpoint, sqlalchemy_url
from schemas.shadow import ShadowLimits


def test_defaults_derive_from_the_data_dir(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'tether.db'}"
    assert settings.admin_token_path == tmp_path / "admin.token"
    assert settings.bridge_secret_path == tmp_path / "bridge.secret"
    assert settings.node_mqtt_url == settings.mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.limits == ShadowLimits()
    assert settings.topics.root == "tether/v1"
    assert settings.share_group is None and settings.bridge_workers == 1


def test_the_environment_is_read_when_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CLOUD_SHARE_GROUP", "tether-cloud")
    monkeypatch.setenv("TETHER_CLOUD_ADVERTISED_MQTT_URL", "mqtts://broker.example:8883")
    monkeypatch.setenv("TETHER_CLOUD_MAX_DEPTH", "4")
    settings = CloudSettings()
    assert settings.share_group == "tether-cloud"
    assert settings.node_mqtt_url == "mqtts://broker.example:8883"
    assert settings.limits.max_depth == 4


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@db:5432/tether", "postgresql+psycopg://u@db:5432/tether"),
        ("postgres://u@db/tether", "postgresql+psycopg://u@db/tether"),
        ("sqlite:////var/lib/tether.db", "sqlite:////var/lib/tether.db"),
    ],
)
def test_database_urls_get_the_psycopg_driver(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected
    assert CloudSettings(database_url=url).store_url == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://h:1884", ("h", 1884, False)),
        ("mqtt://h", ("h", 1883, False)),
        ("mqtts://h", ("h", 8883, True)),
    ],
)
def test_mqtt_endpoints(url: str, expected: tuple[str, int, bool]) -> None:
    assert mqtt_endpoint(url) == expected


@pytest.mark.parametrize(
    "field",
    [
        {"database_url": "mysql://x"},
        {"database_url": "no-scheme"},
        {"mqtt_url": "http://broker"},
        {"advertised_mqtt_url": "mqtt://"},
        {"public_url": "ftp://x"},
        {"topic_root": "tether/+/v1"},
        {"share_group": "Not_A_Name"},
        {"bridge_workers": 0},
        {"activation_token_ttl_seconds": 0},
        {"function_max_in_flight": 0},
        {"function_timeout_seconds": 301},
        {"unknown_setting": 1},
    ],
)
def test_settings_that_cannot_work_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CloudSettings(**field)  # type: ignore[arg-type]
