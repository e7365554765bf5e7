"""The edge link checks every SUBACK: a refused filter is logged with its cause."""

from __future__ import annotations

import logging

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.settings import EdgeSettings
from edge_runtime.sync import MqttLink
from tests.edge_runtime.fakes import make_identity

GRANTED = ReasonCode(PacketTypes.SUBACK, identifier=1)
REFUSED = ReasonCode(PacketTypes.SUBACK, identifier=0x80)


def test_a_refused_subscription_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    link = MqttLink(make_identity("mqtt://127.0.0.1:1", "default", "n1"), EdgeSettings(),
                    deliver=lambda event: None)
    link._filters = ["tether/v1/default/n1/shadow/update/delta", "tether/v1/default/n1/shadow/get/+"]
    with caplog.at_level(logging.ERROR, logger="edge_runtime.sync"):
        link._on_subscribe(link._client, None, 1, [GRANTED, GRANTED], None)
        assert link.refused == [] and not caplog.records
        link._on_subscribe(link._client, None, 2, [GRANTED, REFUSED], None)
    assert link.refused == [f"tether/v1/default/n1/shadow/get/+ ({REFUSED})"]
    assert "shadow/get/+" in caplog.text and "default/n1" in caplog.text


def test_a_refusal_is_logged_once_and_retried_on_a_clean_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = MqttLink(make_identity("mqtt://127.0.0.1:1", "default", "n1"),
                    EdgeSettings(reconnect_min_seconds=0.5, reconnect_max_seconds=4),
                    deliver=lambda event: None)
    link._filters = ["tether/v1/default/n1/shadow/get/+"]
    with caplog.at_level(logging.DEBUG, logger="edge_runtime.sync"):
        link._on_subscribe(link._client, None, 1, [REFUSED], None)
        assert link._clean_next and link._retry_refused_at is not None
        link._on_subscribe(link._client, None, 2, [REFUSED], None)  # the retry: refused again
        assert link._clean_next and link._retry_refused_at is not None
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, "the same refusal is logged once"
        assert "clean session" in errors[0].getMessage()
        link._clean_next = False
        link._on_subscribe(link._client, None, 3, [GRANTED], None)
    assert link.refused == [] and "now grants" in caplog.text
