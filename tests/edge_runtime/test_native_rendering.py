"""The native backend's plan: an app bundle as process specs and mounted files. Pure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.backends.base import AppBundle
from edge_runtime.backends.native.rendering import MINIMAL_PATH, mount_dir, render
from edge_runtime.errors import BackendError
from schemas.resources import App, Certificate, Config, Secret

DATA = Path("/data")
PROPS = DATA / "properties.json"


def bundle(version: str = "v1", *, args: list[str] | None = None, **app: Any) -> AppBundle:
    spec = {
        "name": "web",
        "services": [{"name": "api", "command": ["serve"], "args": args or ["--port", "80"],
                      "env": {"MODE": "eco", "PATH": "/opt/bin"},
                      "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"},
                                       {"name": "sec", "mountPath": "secrets/"},
                                       {"name": "tls", "mountPath": "tls"},
                                       {"name": "scratch", "mountPath": "./tmp"},
                                       {"name": "logs", "mountPath": "host-logs"}]}],
        "volumes": [{"name": "cfg", "config": {"name": "settings", "version": "c1"}},
                    {"name": "sec", "secret": {"name": "creds", "version": "s1"}},
                    {"name": "tls", "certificate": {"name": "cert", "version": "k1"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "logs", "hostPath": {"path": "/var/log"}}],
        **app,
    }
    return AppBundle(app=App.model_validate(spec), version=version,
                     configs={"settings": Config(name="settings", data={"web.conf": "x=1"})},
                     secrets={"creds": Secret(name="creds", data={"token": "t0p"})},
                     certificates={"cert": Certificate(name="cert", certificate="C",
                                                       private_key="K")})


def test_a_service_becomes_argv_env_workdir_and_mounts() -> None:
    [spec] = render(bundle(), data_dir=DATA)
    assert (spec.argv, spec.workdir, spec.replicas) == (["serve", "--port", "80"], "api", 1)
    assert spec.env == {
        "PATH": "/opt/bin", "HOME": "/data/apps/web/api", "LANG": "C.UTF-8", "MODE": "eco",
        "TETHER_APP": "web", "TETHER_SERVICE": "api", "TETHER_PROPERTIES": str(PROPS),
        "TETHER_VOLUME_CFG": "/data/apps/web/api/etc/web",
        "TETHER_VOLUME_SEC": "/data/apps/web/api/secrets",
        "TETHER_VOLUME_TLS": "/data/apps/web/api/tls",
        "TETHER_VOLUME_SCRATCH": "/data/apps/web/api/tmp",
        "TETHER_VOLUME_LOGS": "/var/log",
    }
    mounts = {m.volume: (m.path, m.kind, m.files, m.private) for m in spec.mounts}
    assert mounts == {
        "cfg": ("api/etc/web", "config", {"web.conf": "x=1"}, False),
        "sec": ("api/secrets", "secret", {"token": "t0p"}, True),
        "tls": ("api/tls", "certificate", {"tls.crt": "C", "tls.key": "K"}, True),
        "scratch": ("api/tmp", "emptyDir", {}, False),
        "logs": ("api/host-logs", "hostPath", {}, False),
    }


def test_the_digest_follows_what_a_process_sees_not_the_version_or_replicas() -> None:
    [v1] = render(bundle("v1"), data_dir=DATA)
    [v2] = render(bundle("v2"), data_dir=DATA)
    assert v1.digest == v2.digest and len(v1.digest) == 16
    changed = bundle("v3", args=["--port", "81"])
    assert render(changed, data_dir=DATA)[0].digest != v1.digest
    settings = Config(name="settings", data={"web.conf": "x=2"})
    new_config = replace(bundle("v4"), configs={"settings": settings})
    assert render(new_config, data_dir=DATA)[0].digest != v1.digest
    assert replace(v1, replicas=5).digest == v1.digest


def test_the_minimal_environment_is_fixed() -> None:
    no_env = bundle(services=[{"name": "api", "command": ["serve"]}], volumes=[])
    [spec] = render(no_env, data_dir=DATA)
    assert spec.env["PATH"] == MINIMAL_PATH and set(spec.env) == {
        "PATH", "HOME", "LANG", "TETHER_APP", "TETHER_SERVICE", "TETHER_PROPERTIES"}


@pytest.mark.parametrize(("services", "message"), [
    ([{"name": "api", "image": "nginx:1.27"}],
     "service 'api' has only an image (nginx:1.27): image-only service needs the kube backend"),
    ([{"name": "api"}], "service 'api' has no command to run"),
])
def test_what_cannot_run_as_a_process_is_refused(services: list[Any], message: str) -> None:
    with pytest.raises(BackendError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        render(bundle(services=services, volumes=[]), data_dir=DATA)


@pytest.mark.parametrize(("mount_path", "expected"), [
    ("/etc/app", "api/etc/app"), ("conf", "api/conf"), ("./a/./b/", "api/a/b"),
    ("/", None), (".", None), ("../escape", None), ("/a/../../b", None),
])
def test_mount_paths_stay_below_the_working_dir(mount_path: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(BackendError, match="must name a directory below the working directory"):
            mount_dir("api", mount_path)
    else:
        assert mount_dir("api", mount_path) == expected


def test_keys_that_cannot_be_file_names_and_overlapping_mounts_are_refused() -> None:
    bad_key = replace(bundle(), configs={"settings": Config(name="settings", data={"a/b": "x"})})
    with pytest.raises(BackendError, match="key 'a/b' cannot be a file name"):
        render(bad_key, data_dir=DATA)
    nested = bundle(services=[{"name": "api", "command": ["x"], "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc"}, {"name": "sec", "mountPath": "/etc/secret"}]}])
    with pytest.raises(BackendError, match="overlapping paths"):
        render(nested, data_dir=DATA)


def test_a_function_service_runs_the_function_runtime_announcing_each_replica() -> None:
    code = Config(name="code", data={"calc.py": "def add(event, context): ..."})
    function = replace(bundle(type="function", services=[{
        "name": "add", "handler": "calc.add", "replicas": 2,
        "volumeMounts": [{"name": "scratch", "mountPath": "tmp"},
                         {"name": "cfg", "mountPath": "code"}],
    }]), configs={"settings": code})
    [spec] = render(function, data_dir=DATA)
    assert spec.function and spec.env["TETHER_FUNCTION_HANDLER"] == "calc.add"
    assert (spec.env["TETHER_FUNCTION_APP"], spec.env["TETHER_FUNCTION_NAME"]) == ("web", "add")
    argv = spec.argv_of(1)
    assert argv[1:3] == ["-m", "edge_runtime.functions.runtime"]
    assert argv[argv.index("--code-dir") + 1] == "/data/apps/web/add/code"
    assert argv[argv.index("--announce") + 1] == "/data/functions/web/add/1.json"
    assert spec.argv_of(0) != argv and spec.digest == replace(spec, replicas=1).digest
    no_code = bundle(type="function", services=[{"name": "add", "handler": "calc.add"}], volumes=[])
    with pytest.raises(BackendError, match="mounts no config: mount the config holding calc.py"):
        render(no_code, data_dir=DATA)
