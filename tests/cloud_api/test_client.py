"""``TetherClient`` against the served app, and ``ClientConfig`` precedence (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_api.admin.client import (
    ClientConfig,
    ClientError,
    ConfigError,
    ServerUnreachable,
    TetherClient,
    kind_of,
)
from cloud_api.runtime import Cloud
from tests.cloud_api.conftest import admin_token


def test_generic_verbs_and_shadow(cloud: Cloud, api_url: str) -> None:
    with TetherClient(api_url, admin_token(cloud)) as client:
        client.create("node", {"name": "n1", "labels": {"site": "a"}})
        assert [node["name"] for node in client.list_all("nodes")] == ["n1"]
        assert client.patch("node", "n1", {"description": "x"})["description"] == "x"
        document = client.shadow_patch("n1", {"properties": {"fan": "on"}})
        assert client.shadow_get("n1")["version"] == document["version"]
        with pytest.raises(ClientError) as conflict:
            client.shadow_patch("n1", {"properties": {"fan": "off"}}, version=document["version"] - 1)
        assert conflict.value.code == 409
        client.create("config", {"name": "c1", "data": {"k": "v"}})
        assert client.replace("config", "c1", {"name": "c1", "data": {"k": "v"}})["version"] == "1"
        client.delete("node", "n1")
        assert client.find("node", "n1") is None
        assert [ns["name"] for ns in client.list_all("namespaces")] == ["default"]


def test_errors_carry_the_api_code_and_message(cloud: Cloud, api_url: str) -> None:
    with TetherClient(api_url, "wrong") as client, pytest.raises(ClientError) as refused:
        client.list_all("nodes")
    assert refused.value.code == 401 and "--token" in refused.value.message
    with TetherClient(api_url, admin_token(cloud)) as client, pytest.raises(ClientError) as missing:
        client.get("node", "nope")
    assert missing.value.code == 404 and "not found" in missing.value.message


def test_an_unreachable_server_is_one_line_naming_it() -> None:
    with TetherClient("http://127.0.0.1:1", None, timeout=2) as client, \
            pytest.raises(ServerUnreachable) as unreachable:
        client.list_all("nodes")
    assert "http://127.0.0.1:1" in unreachable.value.message and "\n" not in unreachable.value.message


def test_kind_words() -> None:
    assert kind_of("Apps").plural == "apps" and kind_of("registry").plural == "registries"
    with pytest.raises(ClientError, match="unknown kind"):
        kind_of("pods")


def test_config_precedence(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "tether").mkdir(parents=True)
    (tmp_path / "xdg" / "tether" / "config.yaml").write_text(
        "server: http://file:1\ntoken: file-token\nnamespace: prod\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin.token").write_text("local-token\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_STATE_HOME": str(tmp_path / "state")}
    assert ClientConfig.resolve(env=env, cwd=tmp_path) == ClientConfig("http://file:1", "file-token", "prod")
    env |= {"TETHER_SERVER": "http://env:2", "TETHER_TOKEN": "env-token"}
    assert ClientConfig.resolve(env=env, cwd=tmp_path).server == "http://env:2"
    flagged = ClientConfig.resolve(server="http://flag:3", token="flag-token", namespace="x", env=env)
    assert flagged == ClientConfig("http://flag:3", "flag-token", "x")
    empty = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_STATE_HOME": str(tmp_path / "none")}
    assert ClientConfig.resolve(env=empty, cwd=tmp_path) == ClientConfig(
        "http://127.0.0.1:9080", "local-token", "default")
    (tmp_path / "xdg" / "tether" / "config.yaml").write_text("server: [oops\n")
    with pytest.raises(ConfigError, match="config.yaml"):
        ClientConfig.resolve(env=env, cwd=tmp_path)


def test_a_running_tether_up_is_found_from_any_directory(tmp_path: Path) -> None:
    """`tether up` records its API and token file; the CLI uses them from any directory,
    after flags, environment and the config file, and only while that `tether up` runs."""
    import os
    import subprocess

    from cloud_api.admin.client import forget_up_state, record_up_state, up_state_path

    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_STATE_HOME": str(tmp_path / "state")}
    token_file = tmp_path / "up" / "data" / "admin.token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("up-token\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = up_state_path(env)
    assert state == tmp_path / "state" / "tether" / "up.yaml"
    record_up_state(state, server="http://127.0.0.1:41234", token_file=token_file, pid=os.getpid())
    assert ClientConfig.resolve(env=env, cwd=elsewhere) == ClientConfig(
        "http://127.0.0.1:41234", "up-token", "default")
    # another server asked for: up's token is not sent to it
    assert ClientConfig.resolve(env={**env, "TETHER_SERVER": "http://other:1"}, cwd=elsewhere
                                ).token is None
    forget_up_state(state, pid=os.getpid() + 1)  # not ours to forget
    assert state.exists()
    forget_up_state(state, pid=os.getpid())
    assert ClientConfig.resolve(env=env, cwd=elsewhere).server == "http://127.0.0.1:9080"
    # a `tether up` that died without cleaning up is ignored
    dead = subprocess.Popen(["true"])
    dead.wait()
    record_up_state(state, server="http://127.0.0.1:41234", token_file=token_file, pid=dead.pid)
    assert ClientConfig.resolve(env=env, cwd=elsewhere).server == "http://127.0.0.1:9080"
