"""The few Kubernetes API calls the backend makes, with every failure a ``BackendError``.

``Cluster`` is the thin shell around the official client: server-side apply of a plain
manifest, list by label selector, delete by name, and ``/version``, through the typed
``CoreV1Api``/``AppsV1Api``. Objects travel as plain dicts both ways (requests are
sent with ``_preload_content=False`` and answers decoded as JSON), so the pure modules
never see the client's models, and a field a newer server adds cannot break decoding.

Failures become ``BackendError`` here and nowhere else (``failure``):

* cannot connect, timeouts, 429 and 5xx: retryable after ``TRANSIENT_DELAY`` seconds (or
  the server's ``Retry-After``); 404 and 409 too, since both mean the cluster changed
  under us (a namespace deleted, an object modified) and trying again settles it;
* 401/403: retryable after ``FORBIDDEN_DELAY``, once someone fixes the credentials;
* anything else the server refuses (400, 422 ``Invalid``): not retryable, the app or its
  rendering must change; the server's one-line message is kept;
* the client refusing a call before sending it (``pydantic_core.ValidationError``): not
  retryable, a bug in Tether; an answer that is not JSON: retryable (a proxy in the way?).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pydantic_core
import urllib3
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, VersionApi
from kubernetes.client.exceptions import ApiException

from edge_runtime.errors import BackendError

APPLY = "application/apply-patch+yaml"
TRANSIENT_DELAY = 5.0
FORBIDDEN_DELAY = 60.0
MANAGED_KINDS = ("ConfigMap", "Secret", "Service", "Deployment", "DaemonSet")
"""Every kind Tether writes into the namespace, in the order data comes before users."""

# kind -> (apps group?, method suffix of the typed client)
_METHODS = {
    "ConfigMap": (False, "config_map"),
    "Secret": (False, "secret"),
    "Service": (False, "service"),
    "Pod": (False, "pod"),
    "Deployment": (True, "deployment"),
    "DaemonSet": (True, "daemon_set"),
}


class Cluster:
    """Typed calls into one namespace; every method raises only ``BackendError``."""

    def __init__(
        self, api_client: ApiClient, *, namespace: str, field_manager: str,
        request_timeout: float,
    ) -> None:
        self.namespace = namespace
        self.host = str(api_client.configuration.host)
        self._field_manager = field_manager
        self._timeout = request_timeout
        self._core = CoreV1Api(api_client)
        self._apps = AppsV1Api(api_client)
        self._version = VersionApi(api_client)

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply ``obj`` as the field manager, taking over conflicting fields."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = () if kind == "Namespace" else (self.namespace,)
        method = self._core.patch_namespace if kind == "Namespace" else self._method("patch", kind)
        self._call(
            f"applying {kind} {name}", method, name, *where, obj,
            field_manager=self._field_manager, force=True, _content_type=APPLY,
        )

    def list(self, kind: str, label_selector: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` in the namespace that match, each with its ``kind``."""
        found = self._call(
            f"listing {kind}s", self._method("list", kind), self.namespace,
            label_selector=label_selector,
        )
        return [{"kind": kind, **item} for item in found["items"]]

    def delete(self, kind: str, name: str) -> bool:
        """Delete one object (its dependents in the background); False if already gone."""
        try:
            self._call(
                f"deleting {kind} {name}", self._method("delete", kind), name, self.namespace,
                propagation_policy="Background",
            )
        except BackendError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return False
            raise
        return True

    def pod_log(self, name: str, **options: Any) -> str:
        """A pod's log as text (``read_namespaced_pod_log``: ``tail_lines``, ``since_seconds``,
        ``timestamps``, ``container``, ``limit_bytes``)."""
        with failure(f"reading the log of pod {name}", self.host):
            response: Any = self._core.read_namespaced_pod_log(
                name, self.namespace, _preload_content=False, _request_timeout=self._timeout,
                **options,
            )
            return bytes(response.data).decode("utf-8", "replace")

    def version(self) -> dict[str, Any]:
        """The server's ``/version`` document."""
        found: dict[str, Any] = self._call("reading the server version", self._version.get_code)
        return found

    def _call(self, action: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request, its JSON answer read in full (so the connection is reused)."""
        with failure(action, self.host):
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            return json.loads(response.data)

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        apps, suffix = _METHODS[kind]
        api: Any = self._apps if apps else self._core
        method: Callable[..., Any] = getattr(api, f"{verb}_namespaced_{suffix}")
        return method


@contextmanager
def failure(action: str, host: str) -> Iterator[None]:
    """Turn what the client raises while doing ``action`` into one ``BackendError``."""
    try:
        yield
    except ApiException as exc:
        raise _api_failure(exc, action) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise BackendError(
            f"{action}: cannot reach the Kubernetes API at {host} ({_one_line(str(exc))}): "
            "check that K3s/Kubernetes is running and reachable",
            retry_after=TRANSIENT_DELAY,
        ) from exc
    except pydantic_core.ValidationError as exc:
        raise BackendError(
            f"{action}: the Kubernetes client refused the call "
            f"({_one_line(str(exc.errors()[0]['msg']))}): this is a bug in Tether, report it"
        ) from exc
    except json.JSONDecodeError as exc:
        raise BackendError(
            f"{action}: {host} answered with something that is not JSON ({exc.msg}): check "
            "that it is a Kubernetes API server", retry_after=TRANSIENT_DELAY,
        ) from exc


def _api_failure(exc: ApiException, action: str) -> BackendError:
    status = int(exc.status or 0)
    said = _server_message(exc)
    if status == 0 or status == 429 or status >= 500:
        return BackendError(
            f"{action}: the API server failed ({status or 'no answer'}: {said}): retrying",
            retry_after=_retry_after(exc),
        )
    if status in (401, 403):
        return BackendError(
            f"{action}: the API server refused our credentials ({status}: {said}): check the "
            "kubeconfig or the RBAC of the agent's service account",
            retry_after=FORBIDDEN_DELAY,
        )
    if status in (404, 409):
        return BackendError(
            f"{action}: the cluster changed meanwhile ({status}: {said}): retrying",
            retry_after=TRANSIENT_DELAY,
        )
    return BackendError(f"{action}: Kubernetes refused it ({status}: {said}): fix the app")


def _server_message(exc: ApiException) -> str:
    """The ``message`` of the ``Status`` body, else the HTTP reason, on one line."""
    try:
        message = json.loads(exc.body or "")["message"]
    except (ValueError, TypeError, KeyError):
        message = exc.reason or "no message"
    return _one_line(str(message))


def _retry_after(exc: ApiException) -> float:
    try:
        return max(1.0, float((exc.headers or {}).get("Retry-After", TRANSIENT_DELAY)))
    except (TypeError, ValueError):
        return TRANSIENT_DELAY


def _one_line(text: str) -> str:
    return " ".join(text.split())
