"""Payloads of the topics other than shadow updates: ``shadow/get`` and ``status``."""

from __future__ import annotations

from typing import Any, TypedDict

from schemas.errors import ErrorCode, Rejection
from schemas.shadow import DEFAULT_LIMITS, ShadowLimits, parse_client_token


class StatusPayload(TypedDict):
    online: bool
    timestamp: int


def status_payload(online: bool, *, timestamp: int) -> StatusPayload:
    return {"online": online, "timestamp": timestamp}


def parse_status(payload: Any) -> StatusPayload:
    """A node's retained ``status`` message; 400 unless ``{"online": bool, ...}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("online"), bool):
        raise Rejection(ErrorCode.BAD_REQUEST, 'status must be {"online": true|false, "timestamp": T}')
    timestamp = payload.get("timestamp", 0)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise Rejection(ErrorCode.BAD_REQUEST, "status 'timestamp' must be an integer (epoch seconds)")
    return {"online": payload["online"], "timestamp": timestamp}


def parse_get_request(payload: Any, *, limits: ShadowLimits = DEFAULT_LIMITS) -> str | None:
    """``shadow/get``: ``{}`` or ``{"clientToken": "..."}``; returns the token."""
    if not isinstance(payload, dict):
        raise Rejection(ErrorCode.BAD_REQUEST, 'shadow/get takes {} or {"clientToken": "..."}')
    unknown = sorted(set(payload) - {"clientToken"})
    if unknown:
        raise Rejection(ErrorCode.BAD_REQUEST, f"unknown field(s) {unknown} in shadow/get: use 'clientToken'")
    return parse_client_token(payload, limits)
