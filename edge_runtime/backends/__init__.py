"""Backends carry out the engine's plan: ``kube`` (K3s/Kubernetes) and ``native`` (local processes).

``create_backend(settings)`` builds the one ``settings.backend`` names. Each backend is
imported only when chosen: a native node never imports the ``kubernetes`` client (tens
of megabytes it would never use), and a kube node never starts a process supervisor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_runtime.errors import BackendError, EdgeError

if TYPE_CHECKING:
    from edge_runtime.backends.base import Backend
    from edge_runtime.settings import EdgeSettings


def create_backend(settings: EdgeSettings) -> Backend:
    """The backend ``settings.backend`` names; ``BackendError`` (one line) if it cannot start.

    ``kube`` finds its cluster the way ``kubectl`` does (in-cluster service account, else
    ``KUBECONFIG`` or ``~/.kube/config``) and manages ``settings.kube_namespace``.
    """
    if settings.backend == "kube":
        try:
            from edge_runtime.backends.kube import KubeBackend
            from edge_runtime.backends.kube.podspecs import FunctionRuntime
            from edge_runtime.functions.directory import FUNCTIONS_DIRNAME
        except ImportError as exc:
            raise BackendError(f"the kube backend is not available: {exc}") from exc
        try:
            return KubeBackend.from_environment(
                namespace=settings.kube_namespace,
                functions=FunctionRuntime(image=settings.function_image,
                                          port=settings.function_port),
                functions_dir=settings.data_dir / FUNCTIONS_DIRNAME,
                change_poll_seconds=settings.kube_poll_seconds,
            )
        except EdgeError:
            raise
        except Exception as exc:  # the client's config errors: no cluster to talk to
            message = " ".join(str(exc).split())
            raise BackendError(f"cannot reach a Kubernetes cluster: {message}") from exc
    from edge_runtime.backends.native import NativeBackend, RestartPolicy

    policy = RestartPolicy(initial=settings.restart_backoff_seconds,
                           maximum=settings.restart_backoff_max_seconds)
    return NativeBackend(settings.data_dir, stop_grace_seconds=settings.stop_grace_seconds,
                         restart=policy)
