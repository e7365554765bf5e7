"""Settings come from flags and TETHER_EDGE_*; the stand-in reconciler mirrors properties."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.errors import SettingsError
from edge_runtime.reconciling import StandInReconciler, node_facts
from edge_runtime.settings import load_settings
from schemas.shadow import JSONObject


def test_settings_read_the_environment_and_flags_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TETHER_EDGE_BACKEND", "kube")
    monkeypatch.setenv("TETHER_EDGE_HEARTBEAT_SECONDS", "5")
    settings = load_settings(data_dir=tmp_path, backend=None)
    assert settings.backend == "kube"
    assert (settings.heartbeat_seconds, settings.data_dir) == (5.0, tmp_path)
    assert load_settings(backend="native").backend == "native"


@pytest.mark.parametrize(("field", "value"), [
    ("backend", "docker"),
    ("topic_root", "tether/+/v1"),
    ("reconnect_max_seconds", 0.1),
    ("report_debounce_seconds", 1.0),
])
def test_invalid_settings_are_one_line_errors(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=r"^invalid edge settings: ") as info:
        load_settings(**{field: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("desired", "properties"), [
    ({}, None),
    ({"properties": {}}, {}),
    ({"properties": {"fan": "on", "limits": {"max": 3}}, "apps": {"web": "v1"}},
     {"fan": "on", "limits": {"max": 3}}),
])
def test_standin_mirrors_desired_properties_exactly(
    desired: JSONObject, properties: JSONObject | None
) -> None:
    reported = StandInReconciler(backend="native").reconcile(desired)
    assert reported.get("properties") == properties
    assert set(reported) == {"node"} | ({"properties"} if properties is not None else set())


def test_node_facts_name_the_machine_and_backend() -> None:
    facts = node_facts("kube")
    assert set(facts) == {"hostname", "os", "arch", "kernel", "python", "backend"}
    assert facts["backend"] == "kube" and all(isinstance(v, str) and v for v in facts.values())
