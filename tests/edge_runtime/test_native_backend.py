"""The native backend with real processes (this interpreter running small scripts)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from edge_runtime.backends.base import AppBundle, ObservedApp
from edge_runtime.backends.native import NativeBackend, RestartPolicy
from edge_runtime.errors import BackendError
from edge_runtime.functions.directory import FunctionDirectory
from schemas.resources import App, Config, Secret
from tests.edge_runtime.nativeprocs import kill_leftovers, pid_of, running, wait_for
from tests.edge_runtime.resourcecloud import SLEEPER, native_app, python_service

POLICY = RestartPolicy(initial=0.2, maximum=2.0, stable_seconds=5.0, crash_threshold=3)
MakeBackend = Callable[[], NativeBackend]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    node = tmp_path / "node"
    yield node
    kill_leftovers(node)


@pytest.fixture
def backends(data_dir: Path) -> Iterator[MakeBackend]:
    made: list[NativeBackend] = []

    def make() -> NativeBackend:
        backend = NativeBackend(data_dir, stop_grace_seconds=0.5, restart=POLICY, poll_seconds=0.05)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def observed(backend: NativeBackend, app: str) -> ObservedApp:
    return backend.observe()[app]


def test_a_service_runs_in_its_working_dir_with_its_files_and_env(
    backends: MakeBackend, data_dir: Path
) -> None:
    report = ("import json, os, time\n"
              "env = {k: v for k, v in os.environ.items()\n"
              "       if k.startswith('TETHER_') or k == 'MODE'}\n"
              "conf = open('etc/web/web.conf').read()\n"
              "json.dump({'cwd': os.getcwd(), 'env': env, 'conf': conf}, open('seen.json', 'w'))\n"
              "while True: time.sleep(1)")
    app = native_app("web", python_service(
        "main", report, env={"MODE": "eco"},
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/web"},
                      {"name": "sec", "mountPath": "secrets"}]),
        volumes=[{"name": "cfg", "config": {"name": "settings", "version": "c1"}},
                 {"name": "sec", "secret": {"name": "creds", "version": "s1"}}])
    backend = backends()
    backend.apply(AppBundle(app=app, version="v1",
                            configs={"settings": Config(name="settings", data={"web.conf": "x=1"})},
                            secrets={"creds": Secret(name="creds", data={"token": "t0p"})}))
    workdir = data_dir / "apps" / "web" / "main"
    seen = json.loads(wait_for(lambda: (workdir / "seen.json").exists() and
                               (workdir / "seen.json").read_text(), what="the process's report"))
    assert seen["cwd"] == str(workdir) and seen["conf"] == "x=1"
    assert seen["env"]["MODE"] == "eco" and seen["env"]["TETHER_REPLICA"] == "0"
    assert seen["env"]["TETHER_VOLUME_SEC"] == str(workdir / "secrets")
    assert (workdir / "etc/web/web.conf").stat().st_mode & 0o777 == 0o644
    assert (workdir / "secrets").stat().st_mode & 0o777 == 0o700
    assert (workdir / "secrets/token").stat().st_mode & 0o777 == 0o600
    assert (workdir / "secrets/token").read_text() == "t0p"
    state = observed(backend, "web")
    assert (state.version, state.status.value, state.cause) == ("v1", "Running", "")
    [instance] = state.instances
    assert instance.name == "main-0" and instance.restarts == 0
    assert instance.cpu_percent is not None
    assert instance.memory_bytes is not None and instance.memory_bytes > 1 << 20


def test_a_crashing_process_is_restarted_with_growing_backoff_then_failed(
    backends: MakeBackend, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    crash = ("import os, sys, time\n"
             "open(os.environ['STARTS'], 'a').write(f'{time.monotonic()}\\n')\nsys.exit(3)")
    backend = backends()
    backend.apply(AppBundle(app=native_app("bad", python_service("main", crash,
                                                                 env={"STARTS": str(starts)})),
                            version="v1"))
    wait_for(lambda: starts.exists() and len(starts.read_text().split()) >= 4, timeout=10,
             what="four starts")
    times = [float(line) for line in starts.read_text().split()]
    gaps = [b - a for a, b in pairwise(times)]
    # delays 0.2, 0.4, 0.8 s, each plus an interpreter's start (slower on a loaded machine)
    assert gaps[0] >= 0.2 and gaps[0] < gaps[1] < gaps[2] and gaps[2] > 2 * gaps[0], gaps
    state = wait_for(lambda: (s := observed(backend, "bad")).status.value == "Failed" and s,
                     what="the crash loop to show")
    assert state.cause == "main-0: crashing: exit code 3"
    assert state.instances[0].restarts >= 3


def test_removal_stops_with_sigterm_and_kills_what_ignores_it(
    backends: MakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    polite = ("import os, signal, sys, time\n"
              "def bye(*_): open(os.environ['BYE'], 'w').write('bye'); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nopen('ready', 'w')\n"
              "while True: time.sleep(1)")
    stubborn = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "open('ready', 'w')\nwhile True: time.sleep(1)")
    backend = backends()
    backend.apply(AppBundle(app=native_app("polite", python_service(
        "main", polite, env={"BYE": str(tmp_path / "bye")})), version="v1"))
    backend.apply(AppBundle(app=native_app("stubborn", python_service("main", stubborn)),
                            version="v1"))
    for app in ("polite", "stubborn"):
        wait_for((data_dir / "apps" / app / "main" / "ready").exists, what=f"{app} ready")
    pids = {app: pid_of(data_dir, app) for app in ("polite", "stubborn")}

    started = time.monotonic()
    backend.remove("polite")
    assert time.monotonic() - started < 0.4 and (tmp_path / "bye").read_text() == "bye"
    started = time.monotonic()
    backend.remove("stubborn")
    assert time.monotonic() - started >= 0.5  # the grace period, then SIGKILL
    assert not running(pids["polite"]) and not running(pids["stubborn"])
    assert backend.observe() == {} and list((data_dir / "apps").iterdir()) == []
    backend.remove("stubborn")  # removing what is gone is fine


def test_a_restarted_backend_adopts_running_processes_and_supervises_them(
    backends: MakeBackend, data_dir: Path
) -> None:
    first = backends()
    first.apply(AppBundle(app=native_app("web"), version="v1"))
    pid = pid_of(data_dir, "web")
    first.close()
    second = backends()
    assert pid_of(data_dir, "web") == pid and running(pid)  # adopted, not restarted
    state = observed(second, "web")
    assert (state.version, state.status.value, state.instances[0].restarts) == ("v1", "Running", 0)

    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # the test process is its parent: reap it, as init would
    new = wait_for(lambda: (p := pid_of(data_dir, "web")) != pid and running(p) and p,
                   what="the adopted process to be restarted")
    assert new != pid
    state = wait_for(lambda: (s := observed(second, "web")).status.value == "Running" and s)
    assert state.instances[0].restarts == 1


def test_a_new_version_restarts_only_what_it_changes(backends: MakeBackend, data_dir: Path) -> None:
    def app(b_args: list[str], *, replicas: int = 1, secret: bool = True) -> App:
        mounts = [{"name": "sec", "mountPath": "secrets"}] if secret else []
        return native_app("web", python_service("a", SLEEPER, replicas=replicas),
                          python_service("b", SLEEPER, args=b_args, volumeMounts=mounts),
                          volumes=[{"name": "sec", "secret": {"name": "creds", "version": "s1"}}])

    secrets = {"creds": Secret(name="creds", data={"token": "t0p"})}
    backend = backends()
    backend.apply(AppBundle(app=app(["1"]), version="v1", secrets=secrets))
    before = {r: pid_of(data_dir, "web", r) for r in ("a-0", "b-0")}
    backend.apply(AppBundle(app=app(["2"]), version="v2", secrets=secrets))
    after = {r: pid_of(data_dir, "web", r) for r in ("a-0", "b-0")}
    assert after["a-0"] == before["a-0"] and after["b-0"] != before["b-0"]
    assert not running(before["b-0"])
    backend.apply(AppBundle(app=app(["2"]), version="v3", secrets=secrets))
    assert {r: pid_of(data_dir, "web", r) for r in ("a-0", "b-0")} == after
    assert observed(backend, "web").version == "v3"
    backend.apply(AppBundle(app=app(["2"], replicas=2, secret=False), version="v4"))
    assert pid_of(data_dir, "web", "a-0") == after["a-0"]
    assert running(pid_of(data_dir, "web", "a-1"))
    assert not (data_dir / "apps/web/b/secrets").exists()  # an unmounted secret does not linger
    b_pid = pid_of(data_dir, "web", "b-0")
    assert running(b_pid)
    only_a = native_app("web", python_service("a", SLEEPER, replicas=2))
    backend.apply(AppBundle(app=only_a, version="v5"))
    assert pid_of(data_dir, "web", "a-0") == after["a-0"]
    assert not running(b_pid) and not (data_dir / "apps/web/b").exists()
    assert [i.name for i in observed(backend, "web").instances] == ["a-0", "a-1"]


def test_what_cannot_start_is_failed_with_its_cause(backends: MakeBackend, data_dir: Path) -> None:
    backend = backends()
    missing = {"name": "main", "command": ["/nonexistent/serve"]}
    backend.apply(AppBundle(app=native_app("web", missing), version="v1"))
    state = observed(backend, "web")
    assert state.status.value == "Failed"
    assert state.cause == ("main-0: cannot start: [Errno 2] No such file or directory: "
                           "'/nonexistent/serve'")
    image_only = native_app("img", {"name": "main", "image": "nginx:1.27"})
    with pytest.raises(BackendError, match="image-only service needs the kube backend"):
        backend.apply(AppBundle(app=image_only, version="v1"))
    assert "img" not in backend.observe() and not (data_dir / "apps/img").exists()


def test_a_function_app_runs_the_function_runtime_and_announces_its_replicas(
    backends: MakeBackend, data_dir: Path
) -> None:
    code = Config(name="code", data={"calc.py": "def add(event, context):\n"
                                                "    return event['a'] + event['b']\n"})
    app = App.model_validate({
        "name": "calc", "type": "function",
        "services": [{"name": "add", "handler": "calc.add", "replicas": 2,
                      "volumeMounts": [{"name": "code", "mountPath": "code"}]}],
        "volumes": [{"name": "code", "config": {"name": "code", "version": "1"}}]})
    backend = backends()
    backend.apply(AppBundle(app=app, version="v1", configs={"code": code}))
    directory = FunctionDirectory(data_dir / "functions")
    found = wait_for(lambda: len(directory.instances("calc", "add")) == 2
                     and directory.instances("calc", "add"), what="two announced runtimes")
    request = urllib.request.Request(found[1].url, data=json.dumps({"a": 2, "b": 3}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read()) == 5
    assert observed(backend, "calc").status.value == "Running"
    backend.remove("calc")
    assert directory.instances("calc", "add") == [] and not (data_dir / "functions/calc").exists()


def test_log_sources_are_the_files_of_each_replica(backends: MakeBackend) -> None:
    """What the log server reads: each replica's output file, in order; a crash's last
    lines included, and the instance's last exit for its events."""
    code = "import sys; print('about to fail', flush=True); sys.exit(3)"
    backend = backends()
    backend.apply(AppBundle(app=native_app("bad", python_service("main", code, replicas=2),
                                           python_service("side", SLEEPER)), version="v1"))
    sources = backend.log_sources("bad", "main")
    assert [source.name for source in sources] == ["main-0", "main-1"]
    wait_for(lambda: sources[1].tail(1) == ["about to fail"], what="the output in its file")
    assert [s.name for s in backend.log_sources("bad")] == ["main-0", "main-1", "side-0"]
    instance = wait_for(lambda: (i := observed(backend, "bad").instances[0]).restarts and i,
                        what="a restart")
    assert instance.service == "main" and instance.last_exit == "exit code 3"
    with pytest.raises(LookupError, match="app 'nope' does not run on this node"):
        backend.log_sources("nope")
    with pytest.raises(LookupError, match="no service 'db'"):
        backend.log_sources("bad", "db")
