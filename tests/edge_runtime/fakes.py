"""In-memory stand-ins for what the sync logic and the engine talk to: a transport, a
clock, a cloud, a reconciler that only mirrors properties, a backend (and the node facts
and identities tests use).

``MemoryCloud`` answers shadow requests with the real schemas algebra (``apply_update``),
the way the cloud bridge does, so tests exercise the node against the contract rather
than against hand-written replies.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.backends.base import AppBundle, InstanceStatus, ObservedApp
from edge_runtime.errors import BackendError
from edge_runtime.identity import Identity
from schemas.errors import Rejection
from schemas.messages import parse_get_request
from schemas.resources import AppStatus
from schemas.shadow import JSONObject, ShadowDocument, apply_update, parse_update_request
from schemas.topics import Suffix

FACTS = {"hostname": "edge-1", "os": "linux", "arch": "x86_64", "kernel": "6.1",
         "python": "3.11", "backend": "native"}


class MirrorReconciler:
    """Reports fixed node facts and mirrors desired properties exactly; runs nothing.

    The sync side's tests use it so they do not depend on the engine.
    """

    def __init__(self, facts: JSONObject | None = None) -> None:
        self.facts = facts if facts is not None else FACTS
        self.calls: list[JSONObject] = []

    def reconcile(self, desired: JSONObject) -> JSONObject:
        self.calls.append(copy.deepcopy(desired))
        reported: dict[str, Any] = {"node": copy.deepcopy(self.facts)}
        properties = desired.get("properties")
        if isinstance(properties, dict):
            reported["properties"] = copy.deepcopy(properties)
        return reported


def make_identity(url: str, namespace: str, node: str, *,
                  password: str | None = "s3cret") -> Identity:
    return Identity.model_validate({
        "namespace": namespace,
        "node": node,
        "mqtt": {"url": url, "username": f"{namespace}/{node}", "password": password},
    })


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeTransport:
    """Records what the sync publishes."""

    sent: list[tuple[Suffix, JSONObject, bool]] = field(default_factory=list)

    def publish(self, suffix: Suffix, payload: JSONObject, *, retain: bool = False) -> None:
        self.sent.append((suffix, copy.deepcopy(payload), retain))

    def take(self) -> list[tuple[Suffix, JSONObject, bool]]:
        out, self.sent = self.sent, []
        return out

    def of(self, suffix: Suffix) -> list[JSONObject]:
        return [payload for s, payload, _ in self.sent if s is suffix]


class MemoryCloud:
    """The cloud's shadow service for one node: documents in memory, real algebra."""

    def __init__(self, *, echo_desired_accepted: bool = False) -> None:
        self.document = ShadowDocument()
        self.now = 1_764_100_000
        self.echo_desired_accepted = echo_desired_accepted
        self.lock = threading.Lock()

    def answer(self, suffix: Suffix, payload: Any) -> list[tuple[Suffix, JSONObject]]:
        """The replies to a node's request, as (suffix, payload) pairs."""
        with self.lock:
            self.now += 1
            try:
                if suffix is Suffix.SHADOW_GET:
                    token = parse_get_request(payload)
                    body = self.document.to_json()
                    if token is not None:
                        body["clientToken"] = token
                    return [(Suffix.SHADOW_GET_ACCEPTED, body)]
                if suffix is Suffix.SHADOW_UPDATE:
                    request = parse_update_request(payload, writable=("reported",))
                    outcome = apply_update(self.document, request, now=self.now)
                    self.document = outcome.document
                    return [(Suffix.SHADOW_UPDATE_ACCEPTED, outcome.accepted_payload())]
            except Rejection as exc:
                token = payload.get("clientToken") if isinstance(payload, dict) else None
                rejected = (Suffix.SHADOW_GET_REJECTED if suffix is Suffix.SHADOW_GET
                            else Suffix.SHADOW_UPDATE_REJECTED)
                return [(rejected, exc.payload(timestamp=self.now, client_token=token))]
            return []

    def set_desired(self, patch: JSONObject | None) -> list[tuple[Suffix, JSONObject]]:
        """An admin's change to desired (REST PATCH): the messages the node gets."""
        with self.lock:
            self.now += 1
            request = parse_update_request({"state": {"desired": patch}})
            outcome = apply_update(self.document, request, now=self.now)
            self.document = outcome.document
            out: list[tuple[Suffix, JSONObject]] = []
            if self.echo_desired_accepted:
                out.append((Suffix.SHADOW_UPDATE_ACCEPTED, outcome.accepted_payload()))
            delta = outcome.delta_payload()
            if delta is not None:
                out.append((Suffix.SHADOW_UPDATE_DELTA, delta))
            return out


class FakeBackend:
    """A backend in memory: applied bundles run at once; failures are injected per app."""

    name = "fake"

    def __init__(self) -> None:
        self.bundles: dict[str, AppBundle] = {}
        self.apps: dict[str, ObservedApp] = {}
        self.calls: list[tuple[str, str]] = []
        self.failures: dict[str, BackendError] = {}
        self.listener: Callable[[], None] | None = None

    def apply(self, bundle: AppBundle) -> None:
        self.calls.append(("apply", f"{bundle.name}@{bundle.version}"))
        if bundle.name in self.failures:
            raise self.failures[bundle.name]
        self.bundles[bundle.name] = bundle
        instance = InstanceStatus(f"{bundle.name}-0", AppStatus.RUNNING, cpu_percent=1.0,
                                  memory_bytes=1000)
        self.apps[bundle.name] = ObservedApp(bundle.name, bundle.version, AppStatus.RUNNING,
                                             instances=(instance,))

    def remove(self, app: str) -> None:
        self.calls.append(("remove", app))
        if app in self.failures:
            raise self.failures[app]
        self.apps.pop(app, None)
        self.bundles.pop(app, None)

    def observe(self) -> dict[str, ObservedApp]:
        return dict(self.apps)

    def node_facts(self) -> dict[str, Any]:
        return {"fakeVersion": "1"}

    def close(self) -> None:
        pass

    def watch(self, listener: Callable[[], None]) -> None:
        self.listener = listener
