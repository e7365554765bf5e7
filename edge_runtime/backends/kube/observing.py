"""What runs, read back from the objects Tether manages: one ``ObservedApp`` per app.

``observe`` gets the live objects (plain dicts, as the API server lists them, each with
its ``kind``) and groups them by their ``tether.io/app`` label. Pods only add instances to
an app some other object names: a pod alone is being garbage-collected, not running.

Status of an app, first rule that holds:

1. **Unknown** when none of its objects is a Deployment or DaemonSet (a half-applied or
   half-removed app: applying or removing it again settles it);
2. **Failed** when a workload gave up (``ProgressDeadlineExceeded``, ``ReplicaFailure``)
   or a pod failed or has a container waiting for a reason that does not pass by itself
   (``ImagePullBackOff``, ``ErrImagePull``, ``CrashLoopBackOff``,
   ``CreateContainerConfigError``...); the cause names the reason first;
3. **Pending** when its workloads carry different versions (an apply was cut short);
4. **Succeeded** when it has pods and all of them completed;
5. **Running** when every workload has seen its spec and has as many updated, ready
   replicas as it wants (and no old ones left);
6. **Unknown** when a pod's state is unknown (its node is lost);
7. **Pending** otherwise: rolling out, scheduling, pulling, creating containers.

The version is the ``tether.io/version`` annotation of the workloads; when they disagree
it is ``""``, which never equals a desired version, so the engine applies again.

``function_endpoints`` reads, from the same objects, where the node's function proxy
reaches each function service: its Service's cluster IP and the runtime's port, while
its workload has at least one ready pod. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from edge_runtime.backends.base import InstanceStatus, ObservedApp
from edge_runtime.backends.kube import naming
from schemas.resources import AppStatus

Obj = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "DaemonSet")
FAILING_REASONS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
    "RunContainerError",
})
_MAX_CAUSE = 240


def observe(objects: Iterable[Obj]) -> dict[str, ObservedApp]:
    """Every app the objects belong to, by name."""
    by_app: dict[str, list[Obj]] = {}
    for obj in objects:
        app = (obj.get("metadata", {}).get("labels") or {}).get(naming.APP)
        if app:
            by_app.setdefault(app, []).append(obj)
    return {
        app: _observe_app(app, found)
        for app, found in sorted(by_app.items())
        if any(obj["kind"] != "Pod" for obj in found)
    }


def function_endpoints(objects: Iterable[Obj]) -> dict[tuple[str, str], str]:
    """``(app, function) -> http://CLUSTER-IP:PORT`` for each function service with a
    ready pod; a Service with no cluster IP yet (or a headless one) is left out."""
    services: dict[tuple[str, str], str] = {}
    ready: set[tuple[str, str]] = set()
    for obj in objects:
        labels = obj.get("metadata", {}).get("labels") or {}
        unit = (labels.get(naming.APP), labels.get(naming.SERVICE))
        if not (unit[0] and unit[1]):
            continue
        key = (str(unit[0]), str(unit[1]))
        if obj["kind"] in WORKLOAD_KINDS and _ready_pods(obj) > 0:
            ready.add(key)
        elif obj["kind"] == "Service":
            url = _function_url(obj)
            if url:
                services[key] = url
    return {key: url for key, url in sorted(services.items()) if key in ready}


def _function_url(service: Obj) -> str:
    port = _annotation(service, naming.FUNCTION)
    address = str((service.get("spec") or {}).get("clusterIP") or "")
    if not port.isdigit() or not address or address == "None":
        return ""
    try:
        host = ipaddress.ip_address(address)
    except ValueError:
        return ""
    return f"http://[{host}]:{port}" if host.version == 6 else f"http://{host}:{port}"


def _ready_pods(workload: Obj) -> int:
    status = workload.get("status") or {}
    field = "readyReplicas" if workload["kind"] == "Deployment" else "numberReady"
    return int(status.get(field) or 0)


def _observe_app(app: str, objects: list[Obj]) -> ObservedApp:
    workloads = [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]
    pods = sorted(
        (obj for obj in objects if obj["kind"] == "Pod" and not _terminating(obj)),
        key=lambda pod: str(pod["metadata"].get("name")),
    )
    instances = tuple(instance(pod) for pod in pods)
    versions = sorted({_annotation(obj, naming.VERSION) for obj in workloads or objects})
    version = versions[0] if len(versions) == 1 else ""
    status, cause = _status(workloads, instances, versions)
    return ObservedApp(app, version, status, cause, instances)


def _status(
    workloads: list[Obj], instances: tuple[InstanceStatus, ...], versions: list[str]
) -> tuple[AppStatus, str]:
    if not workloads:
        return AppStatus.UNKNOWN, "no Deployment or DaemonSet found: apply or remove the app"
    states = [workload_state(obj) for obj in workloads]
    for status, cause in states:
        if status is AppStatus.FAILED:
            return status, cause
    for unit in instances:
        if unit.status is AppStatus.FAILED:
            return unit.status, unit.cause
    if len(versions) > 1:
        return AppStatus.PENDING, f"partially applied (versions {', '.join(versions)})"
    if instances and all(unit.status is AppStatus.SUCCEEDED for unit in instances):
        return AppStatus.SUCCEEDED, ""
    if all(status is AppStatus.RUNNING for status, _ in states):
        return AppStatus.RUNNING, ""
    for unit in instances:
        if unit.status is AppStatus.UNKNOWN:
            return unit.status, unit.cause
    causes = [cause for status, cause in states if status is not AppStatus.RUNNING]
    causes += [unit.cause for unit in instances if unit.status is AppStatus.PENDING]
    return AppStatus.PENDING, next((cause for cause in causes if cause), "")


def workload_state(obj: Obj) -> tuple[AppStatus, str]:
    """RUNNING (rolled out and ready), PENDING (getting there) or FAILED, with a cause."""
    name = f"{obj['kind']} {obj['metadata'].get('name')}"
    status = obj.get("status") or {}
    for condition in status.get("conditions") or []:
        kind, holds = condition.get("type"), condition.get("status")
        if (kind, holds) in (("Progressing", "False"), ("ReplicaFailure", "True")):
            reason = condition.get("reason") or str(kind)
            return AppStatus.FAILED, _cause(reason, condition.get("message"))
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return AppStatus.PENDING, f"{name}: waiting for its controller"
    if obj["kind"] == "Deployment":
        desired = (obj.get("spec") or {}).get("replicas", 1)
        updated, ready = status.get("updatedReplicas", 0), status.get("readyReplicas", 0)
        old = status.get("replicas", 0) - updated
    else:
        desired = status.get("desiredNumberScheduled", 0)
        updated, ready = status.get("updatedNumberScheduled", 0), status.get("numberReady", 0)
        old = 0
    if updated < desired:
        return AppStatus.PENDING, f"{name}: rolling out ({updated} of {desired} updated)"
    if old > 0:
        return AppStatus.PENDING, f"{name}: rolling out (old replicas left: {old})"
    if ready < desired:
        return AppStatus.PENDING, f"{name}: {ready} of {desired} ready"
    return AppStatus.RUNNING, ""


def instance(pod: Obj) -> InstanceStatus:
    """One pod as an instance: its status, why, and its containers' restarts."""
    status = pod.get("status") or {}
    regular = status.get("containerStatuses") or []
    containers = (status.get("initContainerStatuses") or []) + regular
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    state, cause = _pod_state(status, containers)
    if (
        state is AppStatus.PENDING and status.get("phase") == "Running"
        and regular and all(c.get("ready") for c in regular)
    ):
        state, cause = AppStatus.RUNNING, ""
    labels = pod["metadata"].get("labels") or {}
    return InstanceStatus(str(pod["metadata"].get("name")), state, cause, restarts,
                          service=str(labels.get(naming.SERVICE, "")),
                          last_exit=_last_exit(containers))


def _last_exit(containers: list[Obj]) -> str:
    """How the last terminated run of a container ended: ``Error (exit code 3)``."""
    for container in containers:
        ended = (container.get("lastState") or {}).get("terminated") or {}
        if ended:
            reason, code = ended.get("reason") or "Terminated", ended.get("exitCode")
            return f"{reason} (exit code {code})" if code is not None else str(reason)
    return ""


def _pod_state(status: Obj, containers: list[Obj]) -> tuple[AppStatus, str]:
    """Failed, Succeeded, Unknown -- or Pending, which ``instance`` may find Running."""
    phase = status.get("phase")
    if phase == "Succeeded":
        return AppStatus.SUCCEEDED, ""
    if phase == "Failed":
        return AppStatus.FAILED, _cause(status.get("reason") or "Failed", status.get("message"))
    waiting = [((c.get("state") or {}).get("waiting") or {}, c) for c in containers]
    for wait, container in waiting:
        if wait.get("reason") in FAILING_REASONS:
            last = ((container.get("lastState") or {}).get("terminated") or {}).get("reason")
            message = wait.get("message") or ""
            if last:
                message = f"last exit {last}" + (f"; {message}" if message else "")
            return AppStatus.FAILED, _cause(wait["reason"], message)
    if phase == "Running":
        return AppStatus.PENDING, "containers not ready"
    if phase == "Pending":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                reason = condition.get("reason") or "Unschedulable"
                return AppStatus.PENDING, _cause(reason, condition.get("message"))
        reasons = [wait["reason"] for wait, _ in waiting if wait.get("reason")]
        return AppStatus.PENDING, reasons[0] if reasons else "Pending"
    return AppStatus.UNKNOWN, _cause(status.get("reason") or "Unknown", status.get("message"))


def _cause(reason: str, message: str | None) -> str:
    """``Reason: message`` on one line, short enough for a report."""
    text = f"{reason}: {message}" if message else reason
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CAUSE else text[: _MAX_CAUSE - 3] + "..."


def _annotation(obj: Obj, key: str) -> str:
    return str((obj.get("metadata", {}).get("annotations") or {}).get(key, ""))


def _terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))
