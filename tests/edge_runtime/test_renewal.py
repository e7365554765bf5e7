"""Certificate renewal: when it is due (pure), and a real renewal against a real cloud and
broker: new files in place (0600 key), the agent back over mTLS with the new serial,
nothing secret in the logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime import renewal
from edge_runtime.activation import activate
from edge_runtime.agent import EdgeAgent
from edge_runtime.renewal import certificate_dates, renewal_due
from edge_runtime.settings import EdgeSettings
from launcher.stack import LocalStack, StackConfig
from tests.edge_runtime.fakes import MirrorReconciler

NS, NODE = "default", "renew-1"


@pytest.mark.parametrize(
    ("jitter", "due"), [(0.0, 1000 + 2 / 3 * 900), (1.0, 1000 + (2 / 3 - 0.05) * 900), (7.0, 1000 + (2 / 3 - 0.05) * 900)]
)
def test_renewal_is_due_at_two_thirds_of_the_lifetime_less_jitter(jitter: float, due: float) -> None:
    assert renewal_due(1000, 1900, jitter=jitter) == pytest.approx(due)


def test_an_expired_or_empty_lifetime_is_due_at_once() -> None:
    assert renewal_due(1000, 1000) == 1000
    assert renewal_due(1000, 900) == 1000


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[LocalStack, list[str]]]:
    """``tether up``'s stack without its local node; records the serials the broker checks."""
    local = LocalStack(StackConfig(data_dir=tmp_path / "stack", http_port=0, mqtt_port=0, mqtts_port=0,
                                   topic_root="renew/tether/v1", edge=False))
    seen: list[str] = []

    def check(identity: str | None, serial: str | None) -> bool:
        seen.append(serial or "")
        return LocalStack._check_certificate(local, identity, serial)

    local._check_certificate = check  # type: ignore[method-assign]
    local.start()
    try:
        yield local, seen
    finally:
        local.stop()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def test_the_agent_renews_its_certificate_and_reconnects_with_it(
    stack: tuple[LocalStack, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    local, seen = stack
    assert local.cloud is not None
    local.cloud.create_node(NODE)
    token = local.cloud.issue_activation(NODE).token
    data_dir = tmp_path / "edge"
    activate(local.api_url, token, data_dir, identity=f"{NS}/{NODE}")
    old_key = (data_dir / "node.key").read_text()
    _, _, old_serial = certificate_dates(data_dir / "node.crt")

    # the first certificate is due at once (as if two thirds of its life had passed)
    renewed: list[bool] = []

    def due(not_before: float, not_after: float, **options: Any) -> float:
        if renewed:
            return renewal_due(not_before, not_after, **options)
        renewed.append(True)
        return not_before

    monkeypatch.setattr(renewal, "renewal_due", due)
    settings = EdgeSettings(data_dir=data_dir, topic_root=local.config.topic_root,
                            reconnect_min_seconds=0.05, reconnect_max_seconds=0.4,
                            renew_retry_min_seconds=0.05, renew_retry_max_seconds=0.2)
    agent = EdgeAgent(settings, reconciler=MirrorReconciler())
    agent.start()
    try:
        assert agent.renewer is not None and agent.link is not None
        wait_for(lambda: agent.renewer is not None and agent.renewer.renewals >= 1, "a renewal")
        _, _, new_serial = certificate_dates(data_dir / "node.crt")
        assert new_serial != old_serial
        wait_for(lambda: new_serial.lstrip("0") in [s.lstrip("0") for s in seen], f"a connect with the new serial {new_serial} (seen {seen})")
        wait_for(lambda: agent.link is not None and agent.link.connected, "the link to be up again")
    finally:
        agent.stop()
    new_key = (data_dir / "node.key").read_text()
    assert new_key != old_key and (data_dir / "node.key").stat().st_mode & 0o777 == 0o600
    assert not list(data_dir.glob("*.next"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "renewed this node's certificate" in logged
    for secret in (old_key.strip(), new_key.strip(), "PRIVATE KEY", "CERTIFICATE", token):
        assert secret not in logged
