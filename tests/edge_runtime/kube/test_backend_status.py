"""``observe`` and ``node_facts``: the fake plays the controllers (``inject_status``);
the mapping from pod and workload states is also checked on plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from edge_runtime.backends.base import InstanceStatus
from edge_runtime.backends.kube import KubeBackend, observing
from schemas.resources import AppStatus
from tests.edge_runtime.kube.backend_support import Live, backend, live, make_bundle, web_app
from tests.fake_kube import FakeKube

__all__ = ["backend", "live"]  # fixtures
LABELS = {"app.kubernetes.io/managed-by": "tether", "tether.io/app": "web",
          "tether.io/service": "api"}


def running(*, ready: bool = True, restarts: int = 0) -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [container(ready=ready, restarts=restarts,
                                                                state={"running": {}})]}


def waiting(reason: str, *, phase: str = "Pending", restarts: int = 0, message: str = "",
            last: str | None = None) -> dict[str, Any]:
    status = container(restarts=restarts, state={"waiting": {"reason": reason, "message": message}})
    if last:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": last}}
    return {"phase": phase, "containerStatuses": [status]}


def container(*, ready: bool = False, restarts: int = 0, state: dict[str, Any]) -> dict[str, Any]:
    return {"name": "api", "image": "nginx:1.27", "imageID": "", "ready": ready,
            "restartCount": restarts, "state": state}


def deployment_status(generation: int, *, replicas: int = 1, updated: int = 1, ready: int = 1,
                      observed: int | None = None) -> dict[str, Any]:
    return {"observedGeneration": generation if observed is None else observed,
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready}


class Controllers:
    """What the controllers of a real cluster would write, written by the test."""

    def __init__(self, fake: FakeKube, namespace: str) -> None:
        self.fake, self.namespace = fake, namespace

    def workload(self, kind: str = "Deployment", app: str = "web") -> dict[str, Any]:
        (found,) = [o for o in self.fake.objects(kind, self.namespace)
                    if o["metadata"]["labels"].get("tether.io/app") == app]
        return found

    def set(self, kind: str, status: dict[str, Any]) -> None:
        name = self.workload(kind)["metadata"]["name"]
        self.fake.inject_status(kind, self.namespace, name, status)

    def pod(self, name: str, status: dict[str, Any], labels: dict[str, str] = LABELS) -> None:
        self.fake.seed({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                        "spec": {"containers": [{"name": "api", "image": "nginx:1.27"}]}})
        self.fake.inject_status("Pod", self.namespace, name, status)


@pytest.fixture
def controllers(backend: KubeBackend, live: Live) -> Controllers:
    assert live.fake is not None
    backend.apply(make_bundle(web_app(), "v1"))
    return Controllers(live.fake, live.namespace)


def test_ready_deployment_and_pods_are_running(
    backend: KubeBackend, controllers: Controllers
) -> None:
    controllers.set("Deployment", deployment_status(1, replicas=2, updated=2, ready=2))
    controllers.pod("web-api-1", running())
    controllers.pod("web-api-2", running(restarts=3))

    observed = backend.observe()

    assert set(observed) == {"web"}
    web = observed["web"]
    assert (web.version, web.status, web.cause) == ("v1", AppStatus.RUNNING, "")
    assert web.instances == (InstanceStatus("web-api-1", AppStatus.RUNNING),
                             InstanceStatus("web-api-2", AppStatus.RUNNING, restarts=3))
    assert web.wire()["instances"][1] == {"name": "web-api-2", "status": "Running", "restarts": 3}


@pytest.mark.parametrize(
    ("pod", "cause"),
    [
        (waiting("ImagePullBackOff", message='Back-off pulling image "nginx:nope"'),
         'ImagePullBackOff: Back-off pulling image "nginx:nope"'),
        (waiting("ErrImagePull"), "ErrImagePull"),
        (waiting("CrashLoopBackOff", phase="Running", restarts=5, last="Error",
                 message="back-off 2m40s restarting failed container"),
         "CrashLoopBackOff: last exit Error; back-off 2m40s restarting failed container"),
        (waiting("CreateContainerConfigError", message='secret "x" not found'),
         'CreateContainerConfigError: secret "x" not found'),
        ({"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."},
         "Evicted: The node was low on memory."),
    ],
    ids=["image-pull-backoff", "err-image-pull", "crash-loop", "config-error", "pod-failed"],
)
def test_failing_pods_fail_the_app_with_their_cause(
    backend: KubeBackend, controllers: Controllers, pod: dict[str, Any], cause: str
) -> None:
    controllers.set("Deployment", deployment_status(1, ready=0))
    controllers.pod("web-api-1", running())
    controllers.pod("web-api-2", pod)

    web = backend.observe()["web"]

    assert (web.status, web.cause) == (AppStatus.FAILED, cause)
    broken = web.instances[1]
    assert (broken.status, broken.cause) == (AppStatus.FAILED, cause)
    assert broken.restarts == (5 if "CrashLoop" in cause else 0)


def test_a_rollout_in_progress_is_pending(backend: KubeBackend, controllers: Controllers) -> None:
    controllers.set("Deployment", deployment_status(1))
    assert backend.observe()["web"].status is AppStatus.RUNNING

    backend.apply(make_bundle(web_app(image="nginx:1.28"), "v2"))
    web = backend.observe()["web"]  # the controller has not seen generation 2 yet
    assert (web.version, web.status) == ("v2", AppStatus.PENDING)
    assert web.cause.endswith("waiting for its controller")

    controllers.set("Deployment", deployment_status(2, replicas=2, updated=1, ready=1))
    controllers.pod("web-api-new", waiting("ContainerCreating"))
    web = backend.observe()["web"]
    assert web.status is AppStatus.PENDING
    assert web.cause.endswith(": rolling out (old replicas left: 1)")
    assert web.instances[0].cause == "ContainerCreating"

    controllers.set("Deployment", deployment_status(2, replicas=1, updated=0, ready=1))
    assert backend.observe()["web"].cause.endswith(": rolling out (0 of 1 updated)")

    controllers.set("Deployment", deployment_status(2))
    assert backend.observe()["web"].status is AppStatus.RUNNING


def test_a_just_applied_app_is_pending(backend: KubeBackend, controllers: Controllers) -> None:
    web = backend.observe()["web"]
    assert (web.version, web.status, web.instances) == ("v1", AppStatus.PENDING, ())


def test_a_deployment_that_gave_up_fails_the_app(
    backend: KubeBackend, controllers: Controllers
) -> None:
    controllers.set("Deployment", {**deployment_status(1, ready=0), "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "web-api" has timed out progressing.'}]})
    web = backend.observe()["web"]
    assert web.status is AppStatus.FAILED
    assert web.cause == 'ProgressDeadlineExceeded: ReplicaSet "web-api" has timed out progressing.'



def test_a_daemonset_is_running_once_every_node_runs_it(backend: KubeBackend, live: Live) -> None:
    assert live.fake is not None
    backend.apply(make_bundle(web_app(workload="daemonset"), "v1"))
    controllers = Controllers(live.fake, live.namespace)
    counts = {"currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberMisscheduled": 0,
              "observedGeneration": 1, "updatedNumberScheduled": 1}

    controllers.set("DaemonSet", {**counts, "numberReady": 0})
    assert backend.observe()["web"].status is AppStatus.PENDING
    controllers.set("DaemonSet", {**counts, "numberReady": 1})
    assert backend.observe()["web"].status is AppStatus.RUNNING


def test_completed_pods_mean_succeeded_and_lost_ones_unknown(
    backend: KubeBackend, controllers: Controllers
) -> None:
    controllers.set("Deployment", deployment_status(1, ready=0))
    controllers.pod("web-api-1", {"phase": "Succeeded"})
    assert backend.observe()["web"].status is AppStatus.SUCCEEDED
    controllers.pod("web-api-2", {"phase": "Unknown", "reason": "NodeLost"})
    assert (backend.observe()["web"].status, backend.observe()["web"].cause) == (
        AppStatus.UNKNOWN, "NodeLost")


def test_observe_sees_only_what_tether_manages(
    backend: KubeBackend, controllers: Controllers
) -> None:
    controllers.pod("stray", running(), labels={"tether.io/app": "ghost"})  # no managed-by
    controllers.pod("orphan", running(), labels={**LABELS, "tether.io/app": "gone"})
    assert set(backend.observe()) == {"web"}  # a pod alone is no app


def test_node_facts_name_the_fake_server_version(backend: KubeBackend) -> None:
    assert backend.node_facts() == {"kubernetesVersion": "v1.37.0-fake"}


# -- the mapping on plain dicts --------------------------------------------------------

def obj(kind: str, name: str, version: str = "v1", **rest: Any) -> dict[str, Any]:
    meta = {"name": name, "labels": {"tether.io/app": "web"},
            "annotations": {"tether.io/version": version}, "generation": 1}
    return {"kind": kind, "metadata": meta, **rest}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (running(), (AppStatus.RUNNING, "")),
        (running(ready=False), (AppStatus.PENDING, "containers not ready")),
        ({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient memory."}]},
         (AppStatus.PENDING, "Unschedulable: 0/1 nodes are available: 1 Insufficient memory.")),
        ({"phase": "Pending"}, (AppStatus.PENDING, "Pending")),
        ({}, (AppStatus.UNKNOWN, "Unknown")),
        (waiting("InvalidImageName", message="x" * 400), (AppStatus.FAILED, "InvalidImageName: "
                                                         + "x" * 219 + "...")),
    ],
    ids=["ready", "not-ready", "unschedulable", "pending", "no-status", "long-cause"],
)
def test_pod_states(status: dict[str, Any], expected: tuple[AppStatus, str]) -> None:
    found = observing.instance(obj("Pod", "p", status=status))
    assert (found.status, found.cause) == expected


def test_workloads_at_different_versions_are_pending_with_no_version() -> None:
    ready = deployment_status(1)
    web = observing.observe([
        obj("Deployment", "a", "v1", spec={"replicas": 1}, status=ready),
        obj("Deployment", "b", "v2", spec={"replicas": 1}, status=ready),
    ])["web"]
    assert (web.version, web.status) == ("", AppStatus.PENDING)
    assert web.cause == "partially applied (versions v1, v2)"


def test_an_app_without_workloads_is_unknown() -> None:
    web = observing.observe([obj("ConfigMap", "c", "v3")])["web"]
    assert (web.version, web.status) == ("v3", AppStatus.UNKNOWN)
    assert "apply or remove the app" in web.cause
