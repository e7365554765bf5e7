"""What the simulated nodes know of app versions: what each pins, and what it runs as.

A node "runs" an app version once it has fetched it and every config, secret,
certificate and registry version it pins (``resources/get``, DESIGN §4), as the agent's
engine does: it learns what an app pins only from the app's own value, so it fetches in
two steps when an app pins anything. A version's content never changes, so one catalog
is shared by the whole fleet and each app version is validated once, not once per node;
each node still fetches everything itself, as a real one would.
"""

from __future__ import annotations

from pydantic import ValidationError

from schemas.resources import App
from schemas.shadow import JSONObject

Key = tuple[str, str, str]
"""(kind, name, version) of a resource version."""


def app_key(name: str, version: str) -> Key:
    return ("app", name, version)


class AppCatalog:
    """App versions seen in ``resources/get`` answers, shared by every node of a fleet."""

    def __init__(self) -> None:
        self._needs: dict[tuple[str, str], tuple[Key, ...]] = {}
        self._instances: dict[tuple[str, str], list[JSONObject]] = {}
        self.invalid: dict[tuple[str, str], str] = {}  # app versions that did not validate

    def learn(self, name: str, version: str, value: JSONObject) -> None:
        """Take an app version's value (the first time only)."""
        if (name, version) in self._needs:
            return
        try:
            app = App.model_validate(value)
        except ValidationError as exc:
            self.invalid[(name, version)] = str(exc.errors(include_url=False)[0]["msg"])
            self._needs[(name, version)] = (app_key(name, version),)
            self._instances[(name, version)] = []
            return
        pinned = tuple((kind.value, ref.name, ref.version) for kind, ref in app.references())
        self._needs[(name, version)] = (app_key(name, version), *pinned)
        self._instances[(name, version)] = [
            {"name": f"{service.name}-{index}", "status": "Running", "restarts": 0}
            for service in app.services for index in range(service.replicas)
        ]

    def needs(self, name: str, version: str) -> tuple[Key, ...]:
        """Everything a node must hold to run the version: the app alone until it is known."""
        return self._needs.get((name, version), (app_key(name, version),))

    def instances(self, name: str, version: str) -> list[JSONObject]:
        """``appstats`` instances of the version running (shared: never mutate it)."""
        return self._instances.get((name, version), [])
