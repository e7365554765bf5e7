"""A Python client of the cloud's REST API: what ``tether apply/get/...`` and scripts call.

Why it exists: the admin CLI stays thin (parse, call, render) and anything else that
drives a fleet (CI jobs, notebooks) gets the same calls and the same errors. Every
namespaced kind lives at ``/v1/namespaces/{ns}/{plural}`` with the same verbs, so the
client is generic over ``KINDS`` rather than a method per resource.

Errors, one tree (the CLI catches ``ClientError``, prints its message on one line)::

    ClientError(code, message)   code: the API's HTTP-like code (DESIGN §6), 0 if none
     ├── ServerUnreachable       no answer: connection refused, DNS, timeout (code 0)
     └── ConfigError             a client setting that cannot work (code 0)

(``manifests.ManifestError`` is one more, for files that are not valid manifests.)
Where the client finds its server and token: ``ClientConfig.resolve``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

import httpx
import yaml

DEFAULT_SERVER = "http://127.0.0.1:9080"
DEFAULT_TOKEN_FILE = Path("data") / "admin.token"  # what ``tether up`` writes, relative to cwd
DEFAULT_NAMESPACE = "default"
PAGE_SIZE = 500  # objects per list request (the server pages; the client follows)


class ClientError(Exception):
    """The API refused a request (``code`` as in DESIGN §6), or the client could not ask."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServerUnreachable(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class ConfigError(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(0, message)


@dataclass(frozen=True)
class Kind:
    """One kind of object: its manifest ``kind``, its URL segment, and what it supports."""

    name: str  # manifest kind, e.g. "App"
    singular: str  # "app"
    plural: str  # "apps"
    namespaced: bool = True
    deletable: bool = True
    replaceable: bool = True  # PUT creates or replaces


KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "namespace", "namespaces", namespaced=False, deletable=False, replaceable=False),
    Kind("Config", "config", "configs"),
    Kind("Secret", "secret", "secrets"),
    Kind("Certificate", "certificate", "certificates"),
    Kind("Registry", "registry", "registries"),
    Kind("App", "app", "apps"),
    Kind("Node", "node", "nodes", replaceable=False),
)
_BY_WORD = {word: kind for kind in KINDS for word in (kind.name.lower(), kind.singular, kind.plural)}
_BY_WORD.update({"ns": _BY_WORD["namespace"], "no": _BY_WORD["node"], "cm": _BY_WORD["config"]})


def kind_of(word: str) -> Kind:
    """``app``, ``apps`` or ``App`` -> the kind; ``ClientError(400)`` naming the choices."""
    found = _BY_WORD.get(word.lower())
    if found is None:
        choices = ", ".join(kind.plural for kind in KINDS)
        raise ClientError(400, f"unknown kind {word!r}: use one of {choices}")
    return found


# -- where the server and token come from ----------------------------------------------
def config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "tether" / "config.yaml"


def up_state_path(env: Mapping[str, str]) -> Path:
    """Where a running ``tether up`` says where it is: ``$XDG_STATE_HOME/tether/up.yaml``."""
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".local" / "state")
    return Path(base) / "tether" / "up.yaml"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_up_state(path: Path) -> dict[str, str]:
    """``server`` and ``token_file`` of the ``tether up`` that wrote ``path``, if it still
    runs; else nothing (a stale or unreadable file is ignored: it is only a hint)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    if not isinstance(loaded, dict) or not isinstance(loaded.get("pid"), int):
        return {}
    if not _alive(loaded["pid"]):
        return {}
    return {key: str(loaded[key]) for key in ("server", "token_file") if key in loaded}


def record_up_state(path: Path, *, server: str, token_file: Path, pid: int) -> None:
    """Written by ``tether up`` once it serves, so the CLI finds it from any directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{pid}")
    temporary.write_text(yaml.safe_dump({"server": server, "token_file": str(token_file),
                                         "pid": pid}), encoding="utf-8")
    os.replace(temporary, path)


def forget_up_state(path: Path, *, pid: int) -> None:
    """Remove ``path`` if ``pid`` wrote it (another ``tether up`` may have since)."""
    try:
        if yaml.safe_load(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, yaml.YAMLError, UnicodeDecodeError, AttributeError):
        pass


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str | None
    namespace: str

    @classmethod
    def resolve(
        cls,
        *,
        server: str | None = None,
        token: str | None = None,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ClientConfig:
        """Flags, then ``TETHER_SERVER/TETHER_TOKEN/TETHER_NAMESPACE``, then the config
        file (``$XDG_CONFIG_HOME/tether/config.yaml``: the context named by
        ``TETHER_CONTEXT``, else its current context, over its top-level keys), then a
        running ``tether up`` (``up_state_path``: its server and admin token, from any
        directory), then the defaults: the local server and, without a token,
        ``./data/admin.token`` if present."""
        env = os.environ if env is None else env
        stored = current_context(_read_config_file(config_path(env)), config_path(env),
                                 name=env.get("TETHER_CONTEXT"))
        up = read_up_state(up_state_path(env))
        server = (server or env.get("TETHER_SERVER") or stored.get("server") or up.get("server")
                  or DEFAULT_SERVER)
        token = token or env.get("TETHER_TOKEN") or stored.get("token")
        if not token:
            token_files = [(cwd or Path.cwd()) / DEFAULT_TOKEN_FILE]
            if "token_file" in up and server.rstrip("/") == up.get("server", "").rstrip("/"):
                token_files.insert(0, Path(up["token_file"]))  # that server's own token
            found = next((path for path in token_files if path.is_file()), None)
            token = found.read_text(encoding="utf-8").strip() if found is not None else None
        namespace = (namespace or env.get("TETHER_NAMESPACE") or stored.get("namespace")
                     or DEFAULT_NAMESPACE)
        if not server.startswith(("http://", "https://")):
            raise ConfigError(f"server {server!r} is not an http:// or https:// URL")
        return cls(server=server.rstrip("/"), token=token or None, namespace=namespace)


CONTEXT_KEYS = frozenset({"server", "token", "namespace"})


def _read_config_file(path: Path) -> dict[str, Any]:
    """The config file: ``server:``/``token:``/``namespace:`` at the top, and/or named
    ``contexts:`` (each a mapping of the same keys) with a ``current-context:``."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix or remove it") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must be a mapping of server:, token:, namespace: strings")
    unknown = set(loaded) - CONTEXT_KEYS - {"contexts", "current-context"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    contexts = loaded.get("contexts", {})
    if not isinstance(contexts, dict) or not all(
            isinstance(c, dict) and set(c) <= CONTEXT_KEYS
            and all(isinstance(v, str) for v in c.values()) for c in contexts.values()):
        raise ConfigError(f"{path}: contexts: must map names to server:, token:, namespace: strings")
    plain = {key: loaded[key] for key in CONTEXT_KEYS | {"current-context"} if key in loaded}
    if not all(isinstance(v, str) for v in plain.values()):
        raise ConfigError(f"{path} must be a mapping of server:, token:, namespace: strings")
    return {**plain, "contexts": contexts}


def current_context(config: dict[str, Any], path: Path, *, name: str | None = None) -> dict[str, str]:
    """The settings in force: the context ``name`` (else the current one), over the
    top-level ones."""
    top = {key: config[key] for key in CONTEXT_KEYS if key in config}
    name = name or config.get("current-context")
    if name is None:
        return top
    contexts: dict[str, dict[str, str]] = config.get("contexts", {})
    if name not in contexts:
        raise ConfigError(f"{path}: context {name!r} is not in contexts: "
                          "`tether config get-contexts` lists them")
    return {**top, **contexts[name]}


def read_config(env: Mapping[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """The config file's path and content (for ``tether config``)."""
    path = config_path(os.environ if env is None else env)
    return path, _read_config_file(path)


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write the config file (mode 0600: it may hold tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cleaned = {k: v for k, v in config.items() if v not in (None, {})}
    path.write_text(yaml.safe_dump(cleaned, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)


# -- the client ----------------------------------------------------------------------
class TetherClient:
    """``with TetherClient(server, token) as client: client.list_all("apps", namespace="default")``."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.dry_run = False  # True: every write is checked by the server, not stored
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- generic verbs over KINDS ----------------------------------------------------
    def list_all(
        self, kind: str, *, namespace: str = DEFAULT_NAMESPACE, selector: str | None = None,
        page_size: int = PAGE_SIZE, **filters: str,
    ) -> list[dict[str, Any]]:
        """Every object of a kind, a page of ``page_size`` at a time (``X-Continue``),
        filtered by the server (``labelSelector``, and ``filters`` such as online)."""
        params: dict[str, Any] = {"limit": page_size, **filters}
        if selector:
            params["labelSelector"] = selector
        found: list[dict[str, Any]] = []
        while True:
            response = self._request("GET", self._url(kind, namespace=namespace), params=params)
            found.extend(self._json(response, "GET", kind))
            token = response.headers.get("X-Continue")
            if not token:
                return found
            params["continue"] = token

    def get(self, kind: str, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", self._url(kind, name, namespace=namespace))
        return found

    def find(self, kind: str, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any] | None:
        """Like ``get``, with ``None`` for a 404."""
        try:
            return self.get(kind, name, namespace=namespace)
        except ClientError as exc:
            if exc.code == 404:
                return None
            raise

    def create(self, kind: str, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        created: dict[str, Any] = self._call("POST", self._url(kind, namespace=namespace), body,
                                             params=self._dry())
        return created

    def replace(
        self, kind: str, name: str, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        """PUT: create or replace (apps, configs, secrets, certificates, registries)."""
        replaced: dict[str, Any] = self._call("PUT", self._url(kind, name, namespace=namespace),
                                              body, params=self._dry())
        return replaced

    def patch(
        self, kind: str, name: str, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        patched: dict[str, Any] = self._call("PATCH", self._url(kind, name, namespace=namespace),
                                             body, params=self._dry())
        return patched

    def delete(self, kind: str, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not kind_of(kind).deletable:
            raise ClientError(405, f"{kind_of(kind).plural} cannot be deleted through the API")
        self._call("DELETE", self._url(kind, name, namespace=namespace), params=self._dry())

    # -- node extras ---------------------------------------------------------------
    def create_nodes(
        self, items: list[dict[str, Any]], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        """``POST .../nodes:bulk`` (at most 1,000 items): ``{created, existing, failed,
        items: [{name, status: created|exists|failed, message?}]}``, items in order."""
        result: dict[str, Any] = self._call(
            "POST", self._url("node", namespace=namespace) + ":bulk", {"items": items},
            params=self._dry())
        return result

    def shadow_get(self, node: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        document: dict[str, Any] = self._call("GET", self._url("node", node, namespace=namespace) + "/shadow")
        return document

    def shadow_patch(
        self, node: str, desired: Any, *, namespace: str = DEFAULT_NAMESPACE, version: int | None = None
    ) -> dict[str, Any]:
        """Merge-patch ``desired`` (RFC 7396); with ``version``, only if it is current (else 409)."""
        body: dict[str, Any] = {"state": {"desired": desired}}
        if version is not None:
            body["version"] = version
        document: dict[str, Any] = self._call(
            "PATCH", self._url("node", node, namespace=namespace) + "/shadow", body)
        return document

    def app_nodes(self, app: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """The rollout of ``app``: ``{app, version, counts: {matched, updated, running,
        failed, offline}, nodes: [{node, desiredVersion, reportedVersion, status, online}]}``."""
        rollout: dict[str, Any] = self._call("GET", self._url("app", app, namespace=namespace) + "/nodes")
        return rollout

    # -- logs and events (cloud_api.rest.routes.logs, .events) -------------------------
    def logs(self, node: str, app: str, *, service: str | None = None, tail: int | None = None,
             namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """``{"node", "app", "service", "lines": [...], "truncated"}``: an app's last lines."""
        found: dict[str, Any] = self._call("GET", self._logs_path(node, app, service, tail, namespace))
        return found

    def follow_logs(self, node: str, app: str, *, service: str | None = None,
                    tail: int | None = None, namespace: str = DEFAULT_NAMESPACE) -> Iterator[list[str]]:
        """The tail, then new lines as the node writes them (each item: the lines of one
        event), until the node ends the stream or the caller stops iterating."""
        path = self._logs_path(node, app, service, tail, namespace) + "&follow=true"
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(10.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[len("event: "):]
                    elif line.startswith("data: "):
                        body = json.loads(line[len("data: "):])
                        if event == "error":
                            raise ClientError(int(body.get("code", 502)), str(body.get("message")))
                        if event == "end":
                            return
                        yield [str(text) for text in body.get("lines", [])]
                    elif not line:
                        event = ""
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"lost the log stream from {self.server} ({exc})") from exc

    def events(self, *, namespace: str = DEFAULT_NAMESPACE, node: str | None = None,
               app: str | None = None, limit: int | None = None,
               continue_: str | None = None) -> dict[str, Any]:
        """One page: ``{"items": [{"time", "node", "app", "service", "kind", "message",
        "count"}], "continue": str|None}``."""
        query = {"node": node, "app": app, "limit": limit, "continue": continue_}
        params = {key: value for key, value in query.items() if value is not None}
        path = f"/v1/namespaces/{namespace}/events"
        if params:
            path += "?" + urlencode(params)
        found: dict[str, Any] = self._call("GET", path)
        return found

    @staticmethod
    def _logs_path(node: str, app: str, service: str | None, tail: int | None, namespace: str) -> str:
        query: dict[str, Any] = {"app": app}
        if service:
            query["service"] = service
        if tail is not None:
            query["tail"] = tail
        return f"/v1/namespaces/{namespace}/nodes/{node}/logs?{urlencode(query)}"
    def summary(self, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """``GET .../nodes:summary``: nodes by state, apps by reported status."""
        found: dict[str, Any] = self._call("GET", self._url("node", namespace=namespace) + ":summary")
        return found

    # -- audit and tokens ----------------------------------------------------------
    def audit(self, **params: Any) -> dict[str, Any]:
        """``GET /v1/audit`` with filters (namespace, token, kind, since, limit, continue)."""
        found: dict[str, Any] = self._call("GET", "/v1/audit", params={
            key: value for key, value in params.items() if value is not None})
        return found

    def create_token(self, role: str, namespaces: list[str], description: str = "") -> dict[str, Any]:
        issued: dict[str, Any] = self._call("POST", "/v1/tokens", {
            "role": role, "namespaces": namespaces, "description": description})
        return issued

    def tokens(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/v1/tokens")
        return found

    def token(self, token_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/tokens/{token_id}")
        return found

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", f"/v1/tokens/{token_id}/revoke")
        return found

    def server_version(self) -> str:
        """The API's version, from its OpenAPI document."""
        document = self._call("GET", "/openapi.json")
        return str(document.get("info", {}).get("version", "unknown"))

    def agent_upload(self, wheel: bytes) -> dict[str, Any]:
        """Store an agent wheel; ``{version, filename, sha256, size, url}``."""
        stored: dict[str, Any] = self._call("PUT", "/v1/agent/wheels", content=wheel)
        return stored

    def agent_upgrade(self, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE
                      ) -> dict[str, Any]:
        """Set the agent version of nodes: ``{target, nodes, updated}``."""
        done: dict[str, Any] = self._call("POST", f"/v1/namespaces/{namespace}/agent/upgrade",
                                          body)
        return done

    def agent_status(self, version: str | None, *, namespace: str = DEFAULT_NAMESPACE
                     ) -> dict[str, Any]:
        """Each node's agent report: ``{version, nodes: {NODE: {agent, upgraded}}}``."""
        query = "" if version is None else f"?version={quote(version)}"
        status: dict[str, Any] = self._call(
            "GET", f"/v1/namespaces/{namespace}/agent/upgrade{query}")
        return status

    def agent_rollout(self, action: str, *, namespace: str = DEFAULT_NAMESPACE
                      ) -> dict[str, Any]:
        """The agent's wave rollout (``status``), or ``pause``/``resume``/``undo`` it."""
        path = f"/v1/namespaces/{namespace}/agent/rollout"
        found: dict[str, Any] = (self._call("GET", path) if action == "status"
                                 else self._call("POST", f"{path}/{quote(action)}"))
        return found

    def rollout(self, app: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """The wave rollout of ``app``: ``app_nodes`` plus ``phase``, ``target``, ``stable``,
        ``wave``, ``message``, ``outcomes`` and each node's ``wave``/``outcome``/``cause``."""
        body: dict[str, Any] = self._call("GET", self._url("app", app, namespace=namespace) + "/rollout")
        return body

    def rollout_action(self, app: str, action: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """``pause``, ``resume`` or ``undo`` the rollout of ``app``: ``{phase, message}``."""
        body: dict[str, Any] = self._call(
            "POST", self._url("app", app, namespace=namespace) + f"/rollout/{action}")
        return body

    def versions(self, kind: str, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        body: dict[str, Any] = self._call("GET", self._url(kind, name, namespace=namespace) + "/versions")
        return body

    def diff(self, kind: str, name: str, old: str | None = None, new: str | None = None, *,
             namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """What changed from version ``old`` to ``new`` (defaults: the current version and
        the one before it)."""
        query = httpx.QueryParams({key: value for key, value in (("from", old), ("to", new))
                                   if value is not None})
        body: dict[str, Any] = self._call(
            "GET", self._url(kind, name, namespace=namespace) + f"/diff?{query}")
        return body

    def shadow_history(self, node: str, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 100,
                       at: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} if at is None else {"limit": limit, "at": at}
        body: dict[str, Any] = self._call(
            "GET", self._url("node", node, namespace=namespace)
            + f"/shadow/history?{httpx.QueryParams(params)}")
        return body

    # -- plumbing ------------------------------------------------------------------
    def _dry(self) -> dict[str, str] | None:
        return {"dryRun": "All"} if self.dry_run else None

    def _url(self, kind: str, name: str | None = None, *, namespace: str) -> str:
        found = kind_of(kind)
        base = f"/v1/namespaces/{namespace}/{found.plural}" if found.namespaced else "/v1/namespaces"
        return base if name is None else f"{base}/{name}"

    def _call(self, method: str, path: str, body: Any = None, *,
              params: dict[str, Any] | None = None, content: bytes | None = None) -> Any:
        return self._json(self._request(method, path, body, params=params, content=content),
                          method, path)

    def _request(self, method: str, path: str, body: Any = None, *,
                 params: dict[str, Any] | None = None,
                 content: bytes | None = None) -> httpx.Response:
        try:
            if content is not None:  # a file as it is (an agent wheel), not JSON
                response = self._http.request(method, path, content=content, params=params)
            else:
                response = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"the Tether API at {self.server} did not answer in time ({type(exc).__name__}); "
                "check that it is running and not overloaded") from exc
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"cannot reach the Tether API at {self.server} ({exc}); check --server, "
                "TETHER_SERVER or the config file, and that the server runs (tether up)") from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(response.status_code,
                              f"{self.server} answered {method} {path} with something other "
                              "than JSON: is --server a Tether API?") from exc


def _error_of(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    else:
        message = f"HTTP {response.status_code}: {response.text[:200].strip() or response.reason_phrase}"
    if response.status_code == 401:
        message += ("; pass a valid token with --token, TETHER_TOKEN or token: in the config file")
    elif response.status_code == 403:
        message += "; use a token with this role and namespace"
    return ClientError(response.status_code, message)
