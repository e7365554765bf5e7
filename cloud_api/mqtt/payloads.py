"""Decoding of every REST body and MQTT payload the cloud receives, in one place.

``schemas.payloads.decode_json`` does the work (size before parsing 413, UTF-8 415, strict
JSON 400). Two values still get through it that Python's ``json`` accepts but that cannot be
stored or sent again: numbers too large for a float (``1e400`` parses to infinity) and
strings holding lone UTF-16 surrogates (``"\\ud800"``). Either would make the reply fail to
encode after the update was stored, so both are refused here with 400 before any work.
"""

from __future__ import annotations

from typing import Any

from schemas.errors import ErrorCode, Rejection
from schemas.payloads import decode_json, encode_json
from schemas.shadow import ShadowLimits


def decode_payload(raw: bytes | bytearray | memoryview, *, limits: ShadowLimits) -> Any:
    """Parse a payload, refusing what could not be stored and sent back (see the module)."""
    value = decode_json(raw, max_bytes=limits.max_payload_bytes)
    try:
        encode_json(value)
    except ValueError as exc:  # inf/nan, and UnicodeEncodeError for lone surrogates
        raise Rejection(
            ErrorCode.BAD_REQUEST,
            "payload holds a number out of range or a lone UTF-16 surrogate: send finite "
            "numbers and valid Unicode",
        ) from exc
    except RecursionError as exc:
        raise Rejection(ErrorCode.BAD_REQUEST, "payload nests too deeply") from exc
    return value
