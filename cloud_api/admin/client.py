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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

DEFAULT_SERVER = "http://127.0.0.1:9080"
DEFAULT_TOKEN_FILE = Path("data") / "admin.token"  # what ``tether up`` writes, relative to cwd
DEFAULT_NAMESPACE = "default"


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
        file (``$XDG_CONFIG_HOME/tether/config.yaml``), then the defaults: the local
        server and, without a token, ``./data/admin.token`` if present."""
        env = os.environ if env is None else env
        stored = _read_config_file(config_path(env))
        server = server or env.get("TETHER_SERVER") or stored.get("server") or DEFAULT_SERVER
        token = token or env.get("TETHER_TOKEN") or stored.get("token")
        if not token:
            token_file = (cwd or Path.cwd()) / DEFAULT_TOKEN_FILE
            token = token_file.read_text(encoding="utf-8").strip() if token_file.is_file() else None
        namespace = (namespace or env.get("TETHER_NAMESPACE") or stored.get("namespace")
                     or DEFAULT_NAMESPACE)
        if not server.startswith(("http://", "https://")):
            raise ConfigError(f"server {server!r} is not an http:// or https:// URL")
        return cls(server=server.rstrip("/"), token=token or None, namespace=namespace)


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix or remove it") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
        raise ConfigError(f"{path} must be a mapping of server:, token:, namespace: strings")
    unknown = set(loaded) - {"server", "token", "namespace"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return loaded


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
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- generic verbs over KINDS ----------------------------------------------------
    def list_all(self, kind: str, *, namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", self._url(kind, namespace=namespace))
        return found

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
        created: dict[str, Any] = self._call("POST", self._url(kind, namespace=namespace), body)
        return created

    def replace(
        self, kind: str, name: str, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        """PUT: create or replace (apps, configs, secrets, certificates, registries)."""
        replaced: dict[str, Any] = self._call("PUT", self._url(kind, name, namespace=namespace), body)
        return replaced

    def patch(
        self, kind: str, name: str, body: dict[str, Any], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        patched: dict[str, Any] = self._call("PATCH", self._url(kind, name, namespace=namespace), body)
        return patched

    def delete(self, kind: str, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not kind_of(kind).deletable:
            raise ClientError(405, f"{kind_of(kind).plural} cannot be deleted through the API")
        self._call("DELETE", self._url(kind, name, namespace=namespace))

    # -- node extras ---------------------------------------------------------------
    def create_nodes(
        self, items: list[dict[str, Any]], *, namespace: str = DEFAULT_NAMESPACE
    ) -> dict[str, Any]:
        """``POST .../nodes:bulk`` (at most 1,000 items): ``{created, existing, failed,
        items: [{name, status: created|exists|failed, message?}]}``, items in order."""
        result: dict[str, Any] = self._call(
            "POST", self._url("node", namespace=namespace) + ":bulk", {"items": items})
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
    def _url(self, kind: str, name: str | None = None, *, namespace: str) -> str:
        found = kind_of(kind)
        base = f"/v1/namespaces/{namespace}/{found.plural}" if found.namespaced else "/v1/namespaces"
        return base if name is None else f"{base}/{name}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
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
