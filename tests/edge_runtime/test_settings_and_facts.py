"""Settings come from flags and TETHER_EDGE_*; the collectors name the machine and its usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.collectors import NodeStats, node_facts
from edge_runtime.errors import SettingsError
from edge_runtime.settings import load_settings


def test_settings_read_the_environment_and_flags_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TETHER_EDGE_BACKEND", "kube")
    monkeypatch.setenv("TETHER_EDGE_HEARTBEAT_SECONDS", "5")
    monkeypatch.setenv("TETHER_EDGE_RECONCILE_SECONDS", "2.5")
    settings = load_settings(data_dir=tmp_path, backend=None)
    assert settings.backend == "kube"
    assert (settings.heartbeat_seconds, settings.data_dir) == (5.0, tmp_path)
    assert (settings.reconcile_seconds, settings.stats_seconds) == (2.5, 30.0)
    assert settings.kube_namespace == "tether-edge"
    assert load_settings(backend="native").backend == "native"


@pytest.mark.parametrize(("field", "value"), [
    ("backend", "docker"),
    ("topic_root", "tether/+/v1"),
    ("reconnect_max_seconds", 0.1),
    ("report_debounce_seconds", 1.0),
    ("reconcile_seconds", 0),
    ("kube_namespace", "Tether_Edge"),
    ("restart_backoff_max_seconds", 0.5),
])
def test_invalid_settings_are_one_line_errors(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=r"^invalid edge settings: ") as info:
        load_settings(**{field: value})
    assert "\n" not in str(info.value)


def test_node_facts_name_the_machine_and_backend() -> None:
    facts = node_facts("kube", extra={"kubernetesVersion": "v1.31.2", "backend": "spoofed"})
    assert set(facts) == {"hostname", "os", "arch", "kernel", "python", "backend",
                          "kubernetesVersion"}
    assert facts["backend"] == "kube"  # a backend cannot override the basic facts
    assert all(isinstance(v, str) and v for v in facts.values())


def test_node_stats_report_cpu_memory_and_the_data_dirs_disk(tmp_path: Path) -> None:
    stats = NodeStats(tmp_path)()
    assert set(stats) == {"cpu", "memory", "disk"}
    assert 0 <= stats["cpu"] <= 100
    for part in ("memory", "disk"):
        assert 0 < stats[part]["used"] <= stats[part]["total"]
