"""The HTTP face of the fake: real sockets on loopback, Kubernetes' REST verbs.

A ``ThreadingHTTPServer`` on 127.0.0.1 and an OS-chosen port, speaking HTTP/1.1 with
keep-alive as urllib3 (inside ``kubernetes.client``) expects. ``Api.handle`` maps a
method and a routed path onto the ``Store``; every request is logged as a
``RequestRecord`` so tests can assert how the code under test talked to the cluster
(e.g. "patched with server-side apply, never deleted and re-created"). Watches are refused
with 400: code that needs them cannot be tested against this fake yet. A pod's log
(``.../pods/{name}/log``) is what a test appended with ``FakeKube.append_log``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fake_kube import discovery
from tests.fake_kube.resources import by_kind
from tests.fake_kube.routing import Discovery, Route, parse
from tests.fake_kube.statuses import KubeError, success
from tests.fake_kube.store import APPLY, Store
from tests.fake_kube.validating import SCHEMA_VERSION

_HEALTH = ("/healthz", "/readyz", "/livez")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, and the status code it answered."""

    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    field_manager: str | None
    code: int


@dataclass(frozen=True)
class _Call:
    """One resource request, decoded."""

    method: str
    route: Route
    query: Mapping[str, str]
    body: Any
    content_type: str
    manager: str  # fieldManager, else the User-Agent's product, as the real server does
    dry_run: bool

    def selectors(self) -> dict[str, str]:
        return {
            "labels": self.query.get("labelSelector", ""),
            "fields": self.query.get("fieldSelector", ""),
        }


class Api:
    """Kubernetes REST semantics over a ``Store``; HTTP-free, so it is easy to follow."""

    def __init__(self, store: Store, address: str) -> None:
        self.store = store
        self.address = address
        self.logs = PodLogs()

    def pod_log(self, namespace: str, name: str, query: Mapping[str, str]) -> str:
        """``GET .../pods/{name}/log``: ``tailLines``, ``sinceSeconds``, ``timestamps``,
        ``container``, ``limitBytes``, as the kubelet answers them (no ``follow``)."""
        pod = self.store.get(by_kind("Pod"), namespace, name)  # 404 for an unknown pod
        if query.get("follow") in ("true", "1"):
            raise KubeError("BadRequest", "follow is not supported by the fake: poll instead")
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = query.get("container") or (names[0] if len(names) == 1 else None)
        if container is None or container not in names:
            raise KubeError("BadRequest", f"a container name must be specified for pod {name}, "
                            f"choose one of: {names}")
        return self.logs.render(namespace, name, container, query)

    def handle(
        self, method: str, path: str, query: Mapping[str, str], raw: bytes, content_type: str,
        user_agent: str,
    ) -> tuple[int, dict[str, Any]]:
        if query.get("watch") in ("true", "1"):
            raise KubeError(
                "BadRequest", "watch is not supported by the fake Kubernetes API server "
                "(tests/fake_kube): list and poll instead",
            )
        target = parse(path)
        if isinstance(target, Discovery):
            if method != "GET":
                raise KubeError("MethodNotAllowed", f"{method} is not allowed on {path}")
            return 200, self._discovery(target, path)
        dry_run = query.get("dryRun")
        if dry_run not in (None, "All"):
            raise KubeError("BadRequest", f"unsupported dryRun value {dry_run!r}")
        manager = query.get("fieldManager") or user_agent.split("/")[0] or "unknown"
        call = _Call(
            method, target, query, _decode(raw, content_type), content_type, manager,
            dry_run=dry_run == "All",
        )
        return self._collection(call) if target.name is None else self._item(call, target.name)

    def _discovery(self, target: Discovery, path: str) -> dict[str, Any]:
        found: dict[str, Any] | None
        if target.what == "version":
            found = discovery.version(SCHEMA_VERSION)
        elif target.what == "api":
            found = discovery.api_versions(self.address)
        elif target.what == "apis":
            found = discovery.api_group_list()
        elif target.what == "group":
            found = discovery.api_group(target.group)
        else:
            found = discovery.resource_list(target.group, target.version)
        if found is None:
            raise KubeError("NotFound", f"the server could not find the resource ({path})")
        return found

    def _collection(self, call: _Call) -> tuple[int, dict[str, Any]]:
        rt, ns = call.route.rt, call.route.namespace
        if call.method == "GET":
            return 200, self.store.list(rt, ns, **call.selectors())
        if call.method == "POST":
            body = _object(call.body)
            return 201, self.store.create(rt, ns, body, manager=call.manager, dry_run=call.dry_run)
        if call.method == "DELETE":  # deletecollection answers with the deleted items
            deleted = self.store.list(rt, ns, **call.selectors())
            for item in deleted["items"]:
                self.store.delete(rt, ns, item["metadata"]["name"], dry_run=call.dry_run)
            return 200, deleted
        raise KubeError("MethodNotAllowed", f"{call.method} is not supported on a collection")

    def _item(self, call: _Call, name: str) -> tuple[int, dict[str, Any]]:
        rt, ns, sub = call.route.rt, call.route.namespace, call.route.subresource
        if call.method == "GET":
            return 200, self.store.get(rt, ns, name)
        if call.method == "PUT":
            return 200, self.store.replace(
                rt, ns, name, _object(call.body), manager=call.manager, subresource=sub,
                dry_run=call.dry_run,
            )
        if call.method == "PATCH":
            apply = call.content_type == APPLY
            obj, created = self.store.patch(
                rt, ns, name, call.body, content_type=call.content_type,
                manager=call.query.get("fieldManager") if apply else call.manager,
                subresource=sub, force=call.query.get("force") in ("true", "1"),
                dry_run=call.dry_run,
            )
            return (201 if created else 200), obj
        if call.method == "DELETE" and not sub:
            options = call.body if isinstance(call.body, dict) else {}
            obj = self.store.delete(
                rt, ns, name, preconditions=options.get("preconditions"), dry_run=call.dry_run
            )
            if rt.delete_returns_object:
                return 200, obj
            return 200, success(rt, name, obj["metadata"]["uid"])
        raise KubeError("MethodNotAllowed", f"{call.method} is not supported on {name}")


_POD_LOG = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log")


class PodLogs:
    """What the pods "wrote": lines with the time they were written, per container."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[tuple[str, str, str], list[tuple[float, str]]] = {}

    def append(self, namespace: str, pod: str, container: str, line: str, at: float) -> None:
        with self._lock:
            self._lines.setdefault((namespace, pod, container), []).append((at, line))

    def render(self, namespace: str, pod: str, container: str, query: Mapping[str, str]) -> str:
        with self._lock:
            lines = list(self._lines.get((namespace, pod, container), []))
        if "sinceSeconds" in query:
            lines = [(at, line) for at, line in lines if at >= time.time() - int(query["sinceSeconds"])]
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail else []
        stamped = query.get("timestamps") in ("true", "1")
        text = "".join(f"{_rfc3339nano(at)} {line}\n" if stamped else f"{line}\n" for at, line in lines)
        if "limitBytes" in query:
            text = text.encode()[: int(query["limitBytes"])].decode("utf-8", "ignore")
        return text


def _rfc3339nano(at: float) -> str:
    """The kubelet's timestamps: RFC 3339 in UTC with nanoseconds, trailing zeros trimmed."""
    seconds = int(at)
    nanos = f"{round((at - seconds) * 1e9):09d}".rstrip("0")
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{base}.{nanos}Z" if nanos else f"{base}Z"


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        return None
    try:
        if content_type == APPLY or content_type.endswith("yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise KubeError("BadRequest", f"the body is not valid {content_type}: {exc}") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise KubeError("BadRequest", "the request body must be a JSON object")
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms ACK stalls
    server: FakeHTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        """Quiet: the request log is ``FakeHTTPServer.requests``."""

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if split.path in _HEALTH:
            self._send(200, b"ok", "text/plain")
            return
        pod_log = _POD_LOG.fullmatch(split.path)
        if pod_log is not None and method == "GET":
            try:
                code, text = 200, self.server.api.pod_log(pod_log["ns"], pod_log["name"], query)
            except KubeError as exc:
                code, text = exc.code, json.dumps(exc.status())
            with self.server.lock:
                self.server.requests.append(
                    RequestRecord(method, split.path, query, content_type, None, code))
            self._send(code, text.encode(), "text/plain" if code == 200 else "application/json")
            return
        try:
            code, body = self.server.api.handle(
                method, split.path, query, raw, content_type, self.headers.get("User-Agent") or ""
            )
        except KubeError as exc:
            code, body = exc.code, exc.status()
        record = RequestRecord(
            method, split.path, query, content_type, query.get("fieldManager"), code
        )
        with self.server.lock:
            self.server.requests.append(record)
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeHTTPServer(ThreadingHTTPServer):
    """Serves one ``Api`` on a daemon thread; ``stop`` also drops idle keep-alive sockets."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, store: Store) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.api = Api(store, f"{host!s}:{port}")
        self.lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        self._connections: set[socket.socket] = set()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-kube", daemon=True
        )

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        with self.lock:
            idle = list(self._connections)
        for connection in idle:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self._thread.join(timeout=5)
