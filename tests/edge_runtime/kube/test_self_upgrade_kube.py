"""A kube agent upgrades itself by patching its own Deployment (the one the install
manifest creates), against the fake API server: the new pod commits once healthy, or the
old pod's watcher patches the old image back past the deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cloud_api.services.install import render_manifest
from edge_runtime.upgrading.kube import ANNOTATION, IMAGE_ENV, KubeUpgrader
from tests.edge_runtime.fakes import FakeClock
from tests.fake_kube import FakeKube

NS = "tether-edge"
ARGV = ["run", "--data-dir", "/var/lib/tether", "--backend", "kube"]


def seed(fake_kube: FakeKube) -> None:
    for obj in render_manifest(public_url="http://cloud:9080", namespace="default", node="n1",
                               token="t0ken", image="tether:1.0.0"):
        if obj["kind"] in ("Namespace", "Deployment"):
            fake_kube.seed(obj)


def agent(fake_kube: FakeKube, version: str, clock: FakeClock, **kwargs: Any) -> KubeUpgrader:
    return KubeUpgrader(fake_kube.api_client(), namespace=NS, deployment="tether-edge",
                        container="agent", version=version, image=f"tether:{version}",
                        argv=ARGV, clock=clock, **kwargs)


def deployment(fake_kube: FakeKube) -> tuple[str, str, dict[str, Any]]:
    found = fake_kube.get("Deployment", "tether-edge", NS)
    assert found is not None
    container = found["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    record = json.loads(found["metadata"].get("annotations", {}).get(ANNOTATION, "{}"))
    return container["image"], env[IMAGE_ENV], record


def wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def target(version: str) -> dict[str, Any]:
    return {"sysapps": {"tether": {"version": version, "image": f"tether:{version}",
                                   "deadlineSeconds": 30}}}


def start_upgrade(fake_kube: FakeKube, clock: FakeClock, version: str) -> KubeUpgrader:
    old = agent(fake_kube, "1.0.0", clock)
    assert old.boot() is None
    restarts: list[list[str]] = []
    old.desired(target(version))
    old.start(healthy=lambda: True, restart=restarts.append, changed=lambda: None)
    wait(lambda: restarts, "the old agent to hand over")
    old.stop()
    assert restarts == [old.watch_argv()] and "upgrade-watch" in restarts[0]
    assert old.report() == {"version": "1.0.0", "state": "Upgrading", "target": version}
    return old


def test_new_pod_commits_once_healthy(fake_kube: FakeKube, tmp_path: Path) -> None:
    seed(fake_kube)
    clock = FakeClock(1000.0)
    old = start_upgrade(fake_kube, clock, "1.1.0")
    image, env, record = deployment(fake_kube)
    assert (image, env) == ("tether:1.1.0", "tether:1.1.0")  # one patch: both or neither
    assert record["from"] == "tether:1.0.0" and record["outcome"] == ""

    # the new pod: on trial until the cloud has its report, then committed and ready
    new = agent(fake_kube, "1.1.0", clock, ready_file=tmp_path / "ready")
    assert new.boot() is None
    new.desired(target("1.1.0"))
    assert new.report()["state"] == "Upgrading"
    healthy = {"now": False}
    new.start(healthy=lambda: healthy["now"], restart=None, changed=lambda: None)
    time.sleep(1.5)
    assert deployment(fake_kube)[2]["outcome"] == "" and not (tmp_path / "ready").exists()
    healthy["now"] = True
    wait(lambda: deployment(fake_kube)[2]["outcome"] == "Running", "the commit")
    wait(lambda: (tmp_path / "ready").exists(), "readiness")
    new.stop()
    assert new.report() == {"version": "1.1.0", "state": "Running", "image": "tether:1.1.0",
                            "deadlineSeconds": 30}
    assert old.watch(sleep=lambda s: None) is None  # the old pod waits to be retired


def test_old_pod_rolls_back_an_unhealthy_new_one(fake_kube: FakeKube) -> None:
    seed(fake_kube)
    clock = FakeClock(1000.0)
    old = start_upgrade(fake_kube, clock, "1.2.0")

    # an old pod restarted mid-trial goes back to watching
    assert agent(fake_kube, "1.0.0", clock).boot() == old.watch_argv()

    def tick(seconds: float) -> None:
        clock.now += 5.0

    again = old.watch(sleep=tick)  # the new pod never commits: 30 s pass
    assert again == old.run_argv() and again[-3:] == ["/var/lib/tether", "--backend", "kube"]
    image, env, record = deployment(fake_kube)
    assert (image, env) == ("tether:1.0.0", "tether:1.0.0")
    assert record["outcome"] == "RolledBack"
    assert record["cause"] == "the pod of 1.2.0 did not report healthy within 30 s"

    restarted = agent(fake_kube, "1.0.0", clock)
    assert restarted.boot() is None
    restarted.desired(target("1.2.0"))
    assert restarted.report() == {"version": "1.0.0", "state": "RolledBack", "target": "1.2.0",
                                  "cause": record["cause"]}
    assert not restarted._wants(restarted._target)  # type: ignore[arg-type]  # not retried


def test_a_target_that_cannot_be_read_is_reported_failed_with_the_version_it_named(
    fake_kube: FakeKube,
) -> None:
    """As on a native node (``upgrading.base``): the report names the version and says what
    to fix; once desired is mended, the node reports Running again and nothing was patched."""
    seed(fake_kube)
    upgrader = agent(fake_kube, "1.0.0", FakeClock())
    assert upgrader.boot() is None
    upgrader.desired({"sysapps": {"tether": {"version": "1.1.0", "image": "tether:1.1.0",
                                             "deadlineSeconds": 0}}})
    report = upgrader.report()
    assert (report["state"], report["target"]) == ("Failed", "1.1.0")
    assert "deadlineSeconds must be" in report["cause"]
    upgrader.desired({"sysapps": {"tether": {"version": "1.0.0", "image": "tether:1.0.0"}}})
    assert upgrader.report()["state"] == "Running"
    assert deployment(fake_kube)[0] == "tether:1.0.0"
