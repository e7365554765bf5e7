"""Self-upgrade of a kube agent: a new image on its own Deployment, rolled back if unhealthy.

Why it exists: on a kube node the agent is the pod of Deployment ``tether-edge``
(``cloud_api.services.install.render_manifest``); desired ``sysapps.tether.image`` names
the image it should run. The Deployment rolls with ``maxSurge: 1, maxUnavailable: 0`` and a
readiness probe on a file the agent writes once the cloud has its report, so the old pod
lives until the new one is ready -- and so it can watch the new one and roll it back.

The upgrade's state lives on the Deployment, in annotation ``tether.io/agent-upgrade``
(``{from, fromVersion, to, toVersion, key, deadline, outcome, cause}``), written in the same
JSON Patch as the new image, so the API server holds both or neither:

1. the old agent (A) patches the image (and ``TETHER_EDGE_AGENT_IMAGE``, how a pod knows
   its own image) and the annotation, then execs ``tether edge upgrade-watch``: it stops
   syncing, releases the data dir and only watches the annotation;
2. the new pod's agent (B) finds the annotation naming its image: it is on trial; once the
   cloud acknowledged its report it sets ``outcome: Running`` (committed) and becomes ready;
   the Deployment then retires A's pod;
3. past the deadline with no commit (B crashed, never became ready, failed its health
   check, its image cannot be pulled), A patches the old image back with
   ``outcome: RolledBack`` and execs ``tether edge run`` again, reporting it.

A killed (or its pod deleted) at any step comes back through the Deployment: an old pod
that finds a trial under way goes back to watching, a new one resumes its trial.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException

from edge_runtime.errors import UpgradeError
from edge_runtime.settings import EdgeSettings
from edge_runtime.upgrading.base import UpgraderBase
from schemas.sysapps import AgentReport, AgentState, AgentTarget

log = logging.getLogger(__name__)

ANNOTATION = "tether.io/agent-upgrade"
IMAGE_ENV = "TETHER_EDGE_AGENT_IMAGE"
POLL_SECONDS = 1.0


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class KubeUpgrader(UpgraderBase):
    """One kube agent's side of ``sysapps.tether`` (see the module docstring)."""

    def __init__(
        self, api: ApiClient, *, namespace: str, deployment: str, container: str,
        version: str, image: str, argv: list[str], ready_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(version=version)
        self._api, self._apps = api, AppsV1Api(api)
        self.namespace, self.deployment, self.container = namespace, deployment, container
        self.image, self._argv = image, argv
        self._ready_file, self._clock = ready_file, clock
        self._record: dict[str, Any] = {}

    # -- the Deployment ------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        try:
            found = self._apps.read_namespaced_deployment(self.deployment, self.namespace)
        except ApiException as exc:
            raise UpgradeError(f"cannot read Deployment {self.namespace}/{self.deployment}: "
                               f"{exc.status} {exc.reason}") from exc
        body: dict[str, Any] = self._api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return body

    @staticmethod
    def record_of(deployment: dict[str, Any]) -> dict[str, Any]:
        raw = (deployment.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
        try:
            record = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _container(self, deployment: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        for index, container in enumerate(containers):
            if container.get("name") == self.container:
                return index, container
        raise UpgradeError(f"Deployment {self.deployment} has no container {self.container!r}")

    def _patch(self, deployment: dict[str, Any], *, image: str, record: dict[str, Any]) -> None:
        """Image, the image variable and the annotation in one JSON Patch, guarded by the
        resourceVersion read (a concurrent change makes it fail rather than mix)."""
        index, container = self._container(deployment)
        base = f"/spec/template/spec/containers/{index}"
        env = container.get("env") or []
        slot = next((i for i, e in enumerate(env) if e.get("name") == IMAGE_ENV), None)
        if slot is None:
            raise UpgradeError(f"Deployment {self.deployment} sets no {IMAGE_ENV}: apply the "
                               "node's manifest again (tether's install command)")
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion",
             "value": deployment["metadata"]["resourceVersion"]},
        ]
        if not deployment["metadata"].get("annotations"):
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
        ops += [
            {"op": "add", "path": f"/metadata/annotations/{_escape(ANNOTATION)}",
             "value": json.dumps(record, sort_keys=True)},
            {"op": "replace", "path": f"{base}/image", "value": image},
            {"op": "replace", "path": f"{base}/env/{slot}/value", "value": image},
        ]
        try:
            self._apps.patch_namespaced_deployment(self.deployment, self.namespace, ops)
        except ApiException as exc:
            raise UpgradeError(f"cannot patch Deployment {self.deployment}: "
                               f"{exc.status} {exc.reason}") from exc

    def _annotate(self, deployment: dict[str, Any], record: dict[str, Any]) -> None:
        ops = [{"op": "test", "path": "/metadata/resourceVersion",
                "value": deployment["metadata"]["resourceVersion"]},
               {"op": "add", "path": f"/metadata/annotations/{_escape(ANNOTATION)}",
                "value": json.dumps(record, sort_keys=True)}]
        try:
            self._apps.patch_namespaced_deployment(self.deployment, self.namespace, ops)
        except ApiException as exc:
            raise UpgradeError(f"cannot annotate Deployment {self.deployment}: "
                               f"{exc.status} {exc.reason}") from exc

    # -- the Upgrader interface --------------------------------------------------------
    def boot(self) -> list[str] | None:
        deployment = self.read()
        record = self.record_of(deployment)
        self._record = record
        if record and not record.get("outcome"):
            if record.get("to") == self.image:
                self._candidate = True
                log.info("agent %s (%s) on trial", self.version, self.image)
            elif record.get("from") == self.image:
                return self.watch_argv()  # an old pod restarted mid-trial: watch again
        return None

    def watch_argv(self) -> list[str]:
        return [sys.executable, "-m", "edge_runtime", "upgrade-watch", *self._argv[1:]]

    def run_argv(self) -> list[str]:
        return [sys.executable, "-m", "edge_runtime", *self._argv]

    # -- ``base.UpgraderBase``'s parts ----------------------------------------------------
    def _target_moved(self, key: str) -> None:
        if self._record.get("outcome") and self._record.get("key") != key:
            self._record = {}

    def _progress(self) -> AgentReport:
        record, target = self._record, self._target
        if target is None or target.version == self.version:
            return AgentReport(self.version, AgentState.RUNNING)
        if record.get("key") == target.key and record.get("outcome") in (
                AgentState.ROLLED_BACK.value, AgentState.FAILED.value):
            return AgentReport(self.version, AgentState(record["outcome"]), target.version,
                               str(record.get("cause", "")))
        return AgentReport(self.version, AgentState.UPGRADING, target.version)

    # -- the thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        ready = False
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._lock.wait(POLL_SECONDS)
                if self._stopping:
                    return
                candidate, target = self._candidate, self._target
            try:
                if not ready and self._healthy():
                    if candidate:
                        self._commit()
                    self._mark_ready()
                    ready = True
                elif candidate and self._clock() > float(self._record.get("deadline", 0)):
                    log.error("agent %s did not report healthy by its deadline; its "
                              "predecessor rolls it back", self.version)
                    os._exit(3)  # the old pod's watcher patches the old image back
                elif not candidate and target is not None and self._wants(target):
                    self._begin(target)
            except UpgradeError as exc:
                log.error("agent upgrade: %s", exc)
                with self._lock:
                    self._record = {"key": target.key if target else "", "outcome":
                                    AgentState.FAILED.value, "cause": str(exc)}
                self._changed()
            except Exception:  # an upgrade must never take the agent down
                log.exception("the agent upgrade failed")

    def _wants(self, target: AgentTarget) -> bool:
        if target.version == self.version:
            return False
        record = self._record
        return not (record.get("key") == target.key and record.get("outcome"))

    def _commit(self) -> None:
        deployment = self.read()
        record = self.record_of(deployment)
        if record.get("to") == self.image and not record.get("outcome"):
            record["outcome"] = AgentState.RUNNING.value
            self._annotate(deployment, record)
        with self._lock:
            self._candidate, self._record = False, record
        log.info("agent %s committed", self.version)
        self._changed()

    def _mark_ready(self) -> None:
        if self._ready_file is not None:
            self._ready_file.parent.mkdir(parents=True, exist_ok=True)
            self._ready_file.write_text("ready\n")

    def _begin(self, target: AgentTarget) -> None:
        if not target.image:
            raise UpgradeError(f"desired.sysapps.tether names no image for {target.version}: "
                               "kube nodes need one (tether agent upgrade --image)")
        deployment = self.read()
        record = {"from": self.image, "fromVersion": self.version, "to": target.image,
                  "toVersion": target.version, "key": target.key,
                  "seconds": target.deadline_seconds,
                  "deadline": self._clock() + target.deadline_seconds, "outcome": "", "cause": ""}
        self._patch(deployment, image=target.image, record=record)
        with self._lock:
            self._record = record
        log.info("agent upgrade: Deployment %s now runs %s; watching it", self.deployment,
                 target.image)
        if self._restart is not None:
            self._restart(self.watch_argv())

    # -- watching (``tether edge upgrade-watch``, in the old pod) --------------------------
    def watch(self, *, sleep: Callable[[float], None] = time.sleep) -> list[str] | None:
        """Until the trial ends: None once committed (this pod is retired by the Deployment),
        else the argv to run again after rolling back (or if the trial vanished)."""
        while True:
            deployment = self.read()
            record = self.record_of(deployment)
            outcome = record.get("outcome")
            if not record or record.get("from") != self.image or outcome:
                return None if outcome == AgentState.RUNNING.value else self.run_argv()
            if self._clock() > float(record.get("deadline", 0)):
                cause = (f"the pod of {record.get('toVersion')} did not report healthy within "
                         f"{record.get('seconds', '?')} s")
                record.update(outcome=AgentState.ROLLED_BACK.value, cause=cause)
                self._patch(deployment, image=self.image, record=record)
                log.error("rolled back to %s: %s", self.image, cause)
                return self.run_argv()
            sleep(POLL_SECONDS)


def kube_upgrader(settings: EdgeSettings, *, version: str, argv: list[str]) -> KubeUpgrader:
    """The upgrader of the agent pod this process runs in (its cluster found as the kube
    backend finds it; its image from ``TETHER_EDGE_AGENT_IMAGE``)."""
    from edge_runtime.backends.kube.backend import client_from_environment

    return KubeUpgrader(client_from_environment(), namespace=settings.kube_namespace,
                        deployment=settings.kube_deployment, container=settings.kube_container,
                        version=version, image=os.environ.get(IMAGE_ENV, ""), argv=argv,
                        ready_file=settings.ready_file)
