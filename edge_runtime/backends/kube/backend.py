"""``KubeBackend``: the ``Backend`` that runs apps on K3s/Kubernetes (DESIGN §8).

Plan, then act: ``apply`` renders the whole bundle first (``rendering.render``: pure, so
a bad bundle fails before anything is written), ensures the namespace (once, and again
after a failed apply), server-side applies each object as field manager ``tether`` with
``force`` (Tether owns these objects; another manager's edits to fields Tether sets are
taken back), then prunes the app's objects that the rendering no longer holds.
``remove`` deletes the app's objects. Both only ever select by
``app.kubernetes.io/managed-by=tether`` plus ``tether.io/app``, so nothing Tether did
not create is touched. ``observe`` lists what Tether manages and reads it back
(``observing``); given a ``functions_dir``, it also announces the function services that
have a ready pod to the node's function proxy (``announcing``).

``watch`` makes the engine observe when something changes rather than only every
reconcile period: a thread lists the managed workloads and pods every
``change_poll_seconds`` and calls the listener when any of their resourceVersions
moved (three cheap list calls; a pod turning ready, crashing or going is seen within
that time, and so is a function becoming callable).

Every method raises only ``BackendError`` (see ``cluster`` for which are retryable).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient, Configuration

from edge_runtime.backends.base import AppBundle, ObservedApp
from edge_runtime.backends.kube import naming, observing
from edge_runtime.backends.kube.announcing import EndpointAnnouncer
from edge_runtime.backends.kube.cluster import MANAGED_KINDS, Cluster
from edge_runtime.backends.kube.podlogs import PodLogSource
from edge_runtime.backends.kube.podspecs import DEFAULT_FUNCTION_RUNTIME, FunctionRuntime
from edge_runtime.backends.kube.rendering import ObjectKey, namespace_manifest, render, stale
from edge_runtime.errors import BackendError
from edge_runtime.logs.sources import LogSource

log = logging.getLogger(__name__)
DEFAULT_NAMESPACE = "tether-edge"
WATCHED_KINDS = ("Deployment", "DaemonSet", "Pod")
K3S_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
"""Where K3s writes its kubeconfig: used when neither KUBECONFIG nor ~/.kube/config is."""


class KubeBackend:
    """Runs app bundles as Deployments/DaemonSets, Services, ConfigMaps and Secrets."""

    name = "kube"

    def __init__(
        self, api_client: ApiClient, *, namespace: str = DEFAULT_NAMESPACE,
        field_manager: str = naming.MANAGER, request_timeout: float = 30.0,
        functions: FunctionRuntime = DEFAULT_FUNCTION_RUNTIME, functions_dir: Path | None = None,
        change_poll_seconds: float = 2.0,
    ) -> None:
        self.namespace = namespace
        self.functions = functions
        self.change_poll_seconds = change_poll_seconds
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None
        self._announcer = EndpointAnnouncer(functions_dir) if functions_dir else None
        self._api_client = api_client
        self._namespace_ensured = False
        self._cluster = Cluster(
            api_client, namespace=namespace, field_manager=field_manager,
            request_timeout=request_timeout,
        )

    @classmethod
    def from_environment(
        cls, *, namespace: str = DEFAULT_NAMESPACE, kubeconfig: str | None = None,
        field_manager: str = naming.MANAGER, functions: FunctionRuntime = DEFAULT_FUNCTION_RUNTIME,
        functions_dir: Path | None = None, change_poll_seconds: float = 2.0,
    ) -> KubeBackend:
        """A backend for the cluster this process finds: in-cluster when running in a pod
        (and no ``kubeconfig`` is given), else ``kubeconfig``, ``KUBECONFIG``,
        ``~/.kube/config`` or K3s' own kubeconfig, in that order."""
        return cls(
            client_from_environment(kubeconfig), namespace=namespace,
            field_manager=field_manager, functions=functions, functions_dir=functions_dir,
            change_poll_seconds=change_poll_seconds,
        )

    def apply(self, bundle: AppBundle) -> None:
        objects = render(bundle, namespace=self.namespace, functions=self.functions)
        try:
            if not self._namespace_ensured:
                self._cluster.apply(namespace_manifest(self.namespace))
                self._namespace_ensured = True
            for obj in objects:
                self._cluster.apply(obj)
        except BackendError:
            self._namespace_ensured = False  # if someone deleted it, the next apply restores it
            raise
        for kind, name in reversed(stale(objects, self._objects_of(bundle.name))):
            self._cluster.delete(kind, name)

    def remove(self, app: str) -> None:
        if self._announcer is not None:  # the proxy stops sending calls first
            self._announcer.withdraw_app(app)
        for kind, name in reversed(self._objects_of(app)):  # workloads before their data
            self._cluster.delete(kind, name)

    def observe(self) -> dict[str, ObservedApp]:
        selector = naming.managed_selector()
        objects = [
            obj for kind in (*MANAGED_KINDS, "Pod") for obj in self._cluster.list(kind, selector)
        ]
        if self._announcer is not None:
            self._announcer.sync(observing.function_endpoints(objects))
        return observing.observe(objects)

    def log_sources(self, app: str, service: str | None = None) -> list[LogSource]:
        """The log of each pod of ``app`` (of ``service`` only, if given), by name;
        ``LookupError`` when none runs."""
        selector = naming.managed_selector(app)
        if service is not None:
            selector += f",{naming.SERVICE}={service}"
        pods = sorted(self._cluster.list("Pod", selector), key=lambda pod: pod["metadata"]["name"])
        if not pods:
            what = f"service {service!r} of app {app!r}" if service else f"app {app!r}"
            raise LookupError(f"no pod of {what} runs on this node")
        return [PodLogSource(self._cluster, pod) for pod in pods]

    def node_facts(self) -> dict[str, Any]:
        return {"kubernetesVersion": str(self._cluster.version().get("gitVersion", ""))}

    def watch(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from a thread of its own) when a managed workload or pod changes."""
        if self._watcher is not None:
            raise RuntimeError("the kube backend already has a listener")
        self._watcher = threading.Thread(
            target=self._watch, args=(listener,), name="kube-changes", daemon=True
        )
        self._watcher.start()

    def close(self) -> None:
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(timeout=self.change_poll_seconds + 35.0)
        # kubernetes ships py.typed but leaves ApiClient.close unannotated
        self._api_client.close()  # type: ignore[no-untyped-call]

    def _watch(self, listener: Callable[[], None]) -> None:
        seen: frozenset[tuple[str, str, str]] | None = None
        while not self._closing.wait(self.change_poll_seconds):
            try:
                now = self._fingerprint()
            except BackendError as exc:  # observe reports the same failure; try again later
                log.debug("cannot list what changed: %s", exc)
                continue
            if seen is not None and now != seen:
                listener()
            seen = now

    def _fingerprint(self) -> frozenset[tuple[str, str, str]]:
        selector = naming.managed_selector()
        return frozenset(
            (kind, str(obj["metadata"].get("name")), str(obj["metadata"].get("resourceVersion")))
            for kind in WATCHED_KINDS
            for obj in self._cluster.list(kind, selector)
        )

    def _objects_of(self, app: str) -> list[ObjectKey]:
        """(kind, name) of every object of ``app`` Tether manages, data kinds first."""
        selector = naming.managed_selector(app)
        return [
            (kind, obj["metadata"]["name"])
            for kind in MANAGED_KINDS
            for obj in self._cluster.list(kind, selector)
        ]


def client_from_environment(kubeconfig: str | None = None) -> ApiClient:
    """An ``ApiClient`` configured as ``KubeBackend.from_environment`` documents."""
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = Configuration()
            # kubernetes ships py.typed but leaves its config loaders unannotated
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            return ApiClient(configuration)
        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=_kubeconfig_path(kubeconfig), persist_config=False
        )
        return client
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise BackendError(
            f"no usable Kubernetes configuration ({' '.join(str(exc).split())}): set "
            "KUBECONFIG to a kubeconfig file, or run the agent in-cluster"
        ) from exc


def _kubeconfig_path(explicit: str | None) -> str:
    """The argument, else ``KUBECONFIG`` (read now: the client reads it once, at import),
    else ``~/.kube/config``, else K3s' kubeconfig if that one exists."""
    if explicit:
        return explicit
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    home = Path("~/.kube/config").expanduser()
    return str(K3S_KUBECONFIG) if not home.exists() and K3S_KUBECONFIG.exists() else str(home)
