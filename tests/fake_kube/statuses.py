"""Kubernetes ``Status`` bodies and the one exception the fake raises to produce them.

The real client turns a non-2xx answer into ``ApiException`` with ``.status`` and the JSON
body in ``.body``; code under test reads ``reason`` and ``code`` from that body, so the
fake answers every failure with the same shape the real server uses.
"""

from __future__ import annotations

from typing import Any

from tests.fake_kube.resources import ResourceType

_CODES = {
    "BadRequest": 400,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyExists": 409,
    "Conflict": 409,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
}


class KubeError(Exception):
    """A failure answered as a ``Status``: reason (``NotFound``...), message, details."""

    def __init__(
        self, reason: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = _CODES[reason]
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> KubeError:
    return KubeError(
        "NotFound", f'{rt.qualified_plural} "{name}" not found', details=_details(rt, name)
    )


def already_exists(rt: ResourceType, name: str) -> KubeError:
    return KubeError(
        "AlreadyExists",
        f'{rt.qualified_plural} "{name}" already exists',
        details=_details(rt, name),
    )


def stale(rt: ResourceType, name: str) -> KubeError:
    return KubeError(
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified_plural} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        details=_details(rt, name),
    )


def apply_conflict(rt: ResourceType, name: str, conflicts: list[tuple[str, str]]) -> KubeError:
    """``conflicts`` holds (manager, field) pairs, worded as the real server words them."""
    lines = [f'conflict with "{manager}": {field}' for manager, field in conflicts]
    noun = "conflict" if len(lines) == 1 else "conflicts"
    message = f"Apply failed with {len(lines)} {noun}: " + "\n".join(lines)
    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": f}
        for m, f in conflicts
    ]
    return KubeError("Conflict", message, details=_details(rt, name, causes=causes))


def invalid(rt: ResourceType, name: str, errors: list[tuple[str, str]]) -> KubeError:
    """``errors`` holds (field path, problem) pairs; all are listed, as the server does."""
    summary = ", ".join(f"{field}: {problem}" if field else problem for field, problem in errors)
    causes = [
        {"reason": "FieldValueInvalid", "message": problem, "field": field}
        for field, problem in errors
    ]
    return KubeError(
        "Invalid",
        f'{rt.kind}{"." + rt.group if rt.group else ""} "{name}" is invalid: [{summary}]',
        details=_details(rt, name, kind=rt.kind, causes=causes),
    )


def success(rt: ResourceType, name: str, uid: str) -> dict[str, Any]:
    """What DELETE answers for types that do not return the deleted object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": _details(rt, name, uid=uid),
    }
