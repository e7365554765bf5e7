"""``FakeKubelet``: runs the pods of the fake's Deployments as local processes.

The fake API server stores objects; nothing runs them. For tests that must see a pod
*work* -- a function runtime answering through the node's proxy -- this plays the
Deployment controller and the kubelet for one namespace, for the images it is told it
can run (the Tether image, whose ``python`` is this interpreter):

- one pod per Deployment (``replicas`` above 1 still start one, so the status never
  claims more than runs), started when the Deployment appears and restarted when its
  ``generation`` changes, stopped when it goes;
- ConfigMap and Secret volumes are written to a directory per pod; in the container's
  ``command``/``args``, a word that is (or starts with) a ``mountPath`` is rewritten to
  that directory, and ``0.0.0.0`` to ``127.0.0.1`` (the pod network is loopback here);
- the Deployment's status is written as a controller would: ``observedGeneration`` and
  ``updatedReplicas`` at once, ``readyReplicas`` only once the container's
  ``readinessProbe`` (HTTP GET, named or numbered port) answers 2xx, and back to 0
  when the process exits.

Paired with ``FakeKube(cluster_ip="127.0.0.1")`` and a function port chosen free, the
Service URL the backend announces reaches the process this started.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tests.fake_kube.cluster import FakeKube


@dataclass
class _Pod:
    generation: int
    process: subprocess.Popen[bytes]
    probe_url: str | None
    ready: bool = False
    reported: tuple[int, bool] | None = None
    log: Path = field(default_factory=Path)


class FakeKubelet:
    """Runs the fake's Deployments in ``namespace`` whose image is in ``images``."""

    def __init__(
        self, fake: FakeKube, *, namespace: str, images: set[str], workdir: Path,
        poll_seconds: float = 0.05,
    ) -> None:
        self.fake, self.namespace, self.images = fake, namespace, images
        self.workdir = Path(workdir)
        self.poll_seconds = poll_seconds
        self.started: list[tuple[str, int]] = []  # (deployment, generation), in order
        self._pods: dict[str, _Pod] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for name in list(self._pods):
            self._kill(name)

    def logs(self, deployment: str) -> str:
        """What the deployment's current pod wrote to stdout and stderr."""
        pod = self._pods.get(deployment)
        return pod.log.read_text(errors="replace") if pod is not None else ""

    # -- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._sync()
            except Exception as exc:  # noqa: BLE001 -- keep playing the kubelet; the test sees it
                print(f"fake kubelet: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _sync(self) -> None:
        deployments = {
            obj["metadata"]["name"]: obj
            for obj in self.fake.objects("Deployment", self.namespace)
        }
        for name in [name for name in self._pods if name not in deployments]:
            self._kill(name)
        for name, deployment in deployments.items():
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            if container.get("image") not in self.images:
                continue
            generation = deployment["metadata"].get("generation", 1)
            pod = self._pods.get(name)
            if pod is None or pod.generation != generation:
                if pod is not None:
                    self._kill(name)
                pod = self._start(name, generation, deployment)
            pod.ready = pod.process.poll() is None and self._probe(pod)
            if pod.reported != (generation, pod.ready):
                self._report(name, generation, pod.ready)
                pod.reported = (generation, pod.ready)

    def _start(self, name: str, generation: int, deployment: dict[str, Any]) -> _Pod:
        pod_spec = deployment["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        root = self.workdir / f"{name}-{generation}"
        shutil.rmtree(root, ignore_errors=True)
        volumes = {volume["name"]: volume for volume in pod_spec.get("volumes") or []}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            local = root / mount["name"]
            self._materialize(volumes[mount["name"]], local)
            mounts[mount["mountPath"].rstrip("/")] = str(local)
        argv = [_rewrite(word, mounts) for word in container.get("command", []) + container.get("args", [])]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        env = {**os.environ, **{e["name"]: e.get("value", "") for e in container.get("env") or []}}
        log = root / "container.log"
        root.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.started.append((name, generation))
        pod = _Pod(generation, process, _probe_url(container), log=log)
        self._pods[name] = pod
        return pod

    def _materialize(self, volume: dict[str, Any], local: Path) -> None:
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            found = self.fake.get("ConfigMap", volume["configMap"]["name"], self.namespace)
            for key, value in ((found or {}).get("data") or {}).items():
                (local / key).write_text(value)
        elif "secret" in volume:
            found = self.fake.get("Secret", volume["secret"]["secretName"], self.namespace)
            for key, value in ((found or {}).get("data") or {}).items():
                (local / key).write_bytes(base64.b64decode(value))

    def _probe(self, pod: _Pod) -> bool:
        if pod.probe_url is None:
            return True
        try:
            with urllib.request.urlopen(pod.probe_url, timeout=1) as answer:
                return 200 <= answer.status < 300
        except (urllib.error.URLError, OSError):
            return False

    def _report(self, name: str, generation: int, ready: bool) -> None:
        count = 1 if ready else 0
        status = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
                  "readyReplicas": count, "availableReplicas": count}
        self.fake.inject_status("Deployment", self.namespace, name, status)

    def _kill(self, name: str) -> None:
        pod = self._pods.pop(name)
        if pod.process.poll() is None:
            pod.process.terminate()
            try:
                pod.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()


def _rewrite(word: str, mounts: dict[str, str]) -> str:
    if word == "0.0.0.0":
        return "127.0.0.1"
    for path, local in mounts.items():
        if word == path or word.startswith(path + "/"):
            return local + word[len(path):]
    return word


def _probe_url(container: dict[str, Any]) -> str | None:
    http = (container.get("readinessProbe") or {}).get("httpGet")
    if not http:
        return None
    port = http["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
    return f"http://127.0.0.1:{port}{http.get('path', '/')}"
