"""Checking the shape of what the cloud sends a node, before the sync logic trusts it.

``decode_json`` (schemas) already guarantees valid, bounded JSON; this module checks the
fields the sync reads (versions are non-negative integers, states are objects, tokens
strings) and returns small typed records. A message that fails raises ``BadMessage``;
the sync logs and drops it, because no input may crash the agent (DESIGN §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.shadow import JSONObject, ShadowDocument


class BadMessage(ValueError):
    """A message whose JSON is valid but whose shape is not the contract's."""


@dataclass(frozen=True)
class Delta:
    """``shadow/update/delta``: desired fields that differ from reported, at ``version``."""

    state: JSONObject
    version: int


@dataclass(frozen=True)
class Accepted:
    """``shadow/update/accepted``: the patch applied per section (None clears it)."""

    state: dict[str, JSONObject | None]
    version: int
    client_token: str | None


@dataclass(frozen=True)
class Refusal:
    """``.../rejected``: an HTTP-like code and a message (DESIGN §6)."""

    code: int
    message: str
    client_token: str | None


def _version(payload: JSONObject) -> int:
    value = payload.get("version")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadMessage("'version' must be a non-negative integer")
    return value


def _object(payload: JSONObject, key: str) -> Any:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise BadMessage(f"'{key}' must be an object")
    return value


def _token(payload: JSONObject) -> str | None:
    token = payload.get("clientToken")
    return token if isinstance(token, str) else None


def parse_document(payload: JSONObject) -> tuple[ShadowDocument, str | None]:
    """``shadow/get/accepted``: the full document and the clientToken it answers, if any."""
    state = _object(payload, "state")
    metadata = payload.get("metadata")
    timestamp = payload.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        timestamp = 0
    document = ShadowDocument(
        desired=_object(state, "desired") if "desired" in state else {},
        reported=_object(state, "reported") if "reported" in state else {},
        metadata=metadata if isinstance(metadata, dict) else {"desired": {}, "reported": {}},
        version=_version(payload),
        timestamp=timestamp,
    )
    return document, _token(payload)


def parse_delta(payload: JSONObject) -> Delta:
    return Delta(state=_object(payload, "state"), version=_version(payload))


def parse_accepted(payload: JSONObject) -> Accepted:
    state = _object(payload, "state")
    sections: dict[str, JSONObject | None] = {}
    for name, patch in state.items():
        if patch is not None and not isinstance(patch, dict):
            raise BadMessage(f"'state.{name}' must be an object or null")
        sections[str(name)] = patch
    return Accepted(state=sections, version=_version(payload), client_token=_token(payload))


def parse_refusal(payload: JSONObject) -> Refusal:
    code, message = payload.get("code"), payload.get("message")
    return Refusal(
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        message=message if isinstance(message, str) else "",
        client_token=_token(payload),
    )
