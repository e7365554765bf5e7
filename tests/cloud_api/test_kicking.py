"""SessionKicker's own failure paths: a broker that is down or never answers costs a log
line, never a leaked socket or a stuck thread. (Kicking a node off a real Mosquitto is
``tests/broker/test_mosquitto_kick.py``.)"""

from __future__ import annotations

import gc
import socket
import time
from pathlib import Path

import pytest

from cloud_api.mqtt.kicking import SessionKicker
from cloud_api.settings import CloudSettings
from tests.conftest import free_port


def kicker(tmp_path: Path, port: int, timeout: float = 0.5) -> SessionKicker:
    settings = CloudSettings(data_dir=tmp_path, mqtt_url=f"mqtt://127.0.0.1:{port}")
    return SessionKicker(settings, password="p", timeout=timeout)


def test_a_broker_that_is_down_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert kicker(tmp_path, free_port()).kick("tether-edge.default.n1") is False
    assert "cannot take over tether-edge.default.n1's session" in caplog.text
    gc.collect()  # a leaked socket would warn here, and warnings are errors


def test_a_broker_that_never_answers_is_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        assert kicker(tmp_path, silent.getsockname()[1]).kick("tether-edge.default.n1") is False
        assert time.monotonic() - started < 5
        connection, _ = silent.accept()
        with connection:
            assert connection.recv(1)  # it did send a CONNECT
    assert "no CONNACK" in caplog.text
    gc.collect()


def test_a_bad_identity_is_ignored_and_close_is_idempotent(tmp_path: Path) -> None:
    kick = kicker(tmp_path, free_port())
    assert kick("not-an-identity") is None
    kick.close()
    kick.close()
