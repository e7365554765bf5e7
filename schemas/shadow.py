"""The shadow algebra of DESIGN §5: merge patches, delta, versions, metadata, limits.

A shadow document holds a ``desired`` and a ``reported`` section. Updates are JSON merge
patches (RFC 7396) of either section; every accepted update bumps ``version`` by one and
stamps the leaves it wrote in ``metadata``. The ``delta`` is what the node still has to
do: desired fields that differ from reported, with one set rule under ``apps``.

All functions are pure. Inputs are never mutated; outputs may share unchanged sub-trees
with their inputs, so treat every document as immutable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from schemas.errors import ErrorCode, Rejection
from schemas.payloads import encode_json

JSONObject = dict[str, Any]
SECTIONS = ("desired", "reported")
APPS_KEY = "apps"
REQUEST_KEYS = frozenset({"state", "version", "clientToken"})


@dataclass(frozen=True)
class ShadowLimits:
    """Limits on what a document may hold; all configurable (DESIGN §5)."""

    max_state_bytes: int = 256 * 1024
    max_depth: int = 10
    max_client_token_bytes: int = 64

    @property
    def max_payload_bytes(self) -> int:
        """Raw payloads over this are refused before they are parsed."""
        return 2 * self.max_state_bytes + 64 * 1024


DEFAULT_LIMITS = ShadowLimits()


# -- JSON helpers ----------------------------------------------------------------------
def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values, where ``true`` is not ``1`` (unlike Python's ``==``)."""
    if a is b:  # the algebra shares what an update leaves alone: a report leaves desired
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def depth(value: Any) -> int:
    """A scalar has depth 0; an object or array 1 + its deepest child."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _has_null_in_array(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            if any(item is None for item in node):
                return True
            stack.extend(node)
    return False


def state_size(desired: JSONObject, reported: JSONObject) -> int:
    """Bytes of the state as compact UTF-8 JSON: what the size limit counts."""
    return len(encode_json({"desired": desired, "reported": reported}))


# -- merge patch -----------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: keys named are replaced, ``null`` deletes, arrays are replaced whole."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(old: JSONObject, new: JSONObject) -> JSONObject:
    """The smallest merge patch that turns ``old`` into ``new`` (``new`` holds no nulls)."""
    patch: JSONObject = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_diff(old[key], value)
            if sub:
                patch[key] = sub
        elif isinstance(value, dict) and not value:
            # merge_patch(scalar, {}) gives {}: an empty object replaces a scalar as is.
            patch[key] = value
        elif not json_equal(old[key], value):
            patch[key] = value
    return patch


# -- delta -----------------------------------------------------------------------------
def _object_delta(desired: JSONObject, reported: Any) -> JSONObject:
    have_all = reported if isinstance(reported, dict) else {}
    out: JSONObject = {}
    for key, want in desired.items():
        if isinstance(want, dict):
            if key in have_all and not isinstance(have_all[key], dict):
                out[key] = want  # an object where reported holds a scalar: all of it
            else:
                sub = _object_delta(want, have_all.get(key))
                if sub:
                    out[key] = sub
        elif key not in have_all or not json_equal(want, have_all[key]):
            out[key] = want
    return out


def compute_delta(desired: JSONObject, reported: JSONObject) -> JSONObject:
    """Desired fields that differ from reported, full paths kept; reported-only fields left out.

    Under ``apps`` (a set of app name -> version), an app reported but no longer desired
    appears as ``null`` so that the node removes it.
    """
    delta = _object_delta(desired, reported)
    want_apps, have_apps = desired.get(APPS_KEY), reported.get(APPS_KEY)
    if isinstance(want_apps, dict) and isinstance(have_apps, dict):
        gone = {name: None for name in have_apps if name not in want_apps}
        if gone:
            delta[APPS_KEY] = {**delta.get(APPS_KEY, {}), **gone}
    return delta


# -- metadata --------------------------------------------------------------------------
def _stamps(patch: Any, now: int) -> Any:
    """Metadata of what a patch writes: a timestamp at every leaf (deleted ones too)."""
    if isinstance(patch, dict):
        return {key: _stamps(value, now) for key, value in patch.items()}
    return {"timestamp": now}


def _metadata_after(old_meta: Any, old_state: Any, patch: Any, now: int) -> Any:
    if not isinstance(patch, dict):
        return {"timestamp": now}
    keep = isinstance(old_state, dict) and isinstance(old_meta, dict)
    meta: JSONObject = dict(old_meta) if keep else {}
    state: JSONObject = old_state if isinstance(old_state, dict) else {}
    for key, value in patch.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = _metadata_after(meta.get(key), state.get(key), value, now)
    return meta


# -- documents -------------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowDocument:
    """One node's shadow. ``version`` 0 is the empty document before any update."""

    desired: JSONObject = field(default_factory=dict)
    reported: JSONObject = field(default_factory=dict)
    metadata: JSONObject = field(default_factory=lambda: {"desired": {}, "reported": {}})
    version: int = 0
    timestamp: int = 0

    @property
    def delta(self) -> JSONObject:
        return compute_delta(self.desired, self.reported)

    def to_json(self) -> JSONObject:
        """The full document as served on ``shadow/get/accepted`` and REST."""
        return {
            "state": {"desired": self.desired, "reported": self.reported, "delta": self.delta},
            "metadata": self.metadata,
            "version": self.version,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, doc: JSONObject) -> ShadowDocument:
        state = doc.get("state", {})
        return cls(
            desired=state.get("desired", {}),
            reported=state.get("reported", {}),
            metadata=doc.get("metadata", {"desired": {}, "reported": {}}),
            version=doc.get("version", 0),
            timestamp=doc.get("timestamp", 0),
        )


@dataclass(frozen=True)
class UpdateRequest:
    """A validated update: the sections it patches (None clears one), and its options."""

    state: dict[str, JSONObject | None]
    version: int | None = None
    client_token: str | None = None


def client_token_of(payload: Any, limits: ShadowLimits = DEFAULT_LIMITS) -> str | None:
    """The clientToken of a request, if it has a usable one (for echoing in rejections)."""
    if isinstance(payload, dict):
        token = payload.get("clientToken")
        if isinstance(token, str) and len(token.encode("utf-8", "surrogatepass")) <= limits.max_client_token_bytes:
            return token
    return None


def parse_client_token(payload: JSONObject, limits: ShadowLimits) -> str | None:
    token = payload.get("clientToken")
    if token is None:
        return None
    if not isinstance(token, str):
        raise Rejection(ErrorCode.BAD_REQUEST, "clientToken must be a string")
    if len(token.encode("utf-8")) > limits.max_client_token_bytes:
        raise Rejection(
            ErrorCode.BAD_REQUEST, f"clientToken exceeds {limits.max_client_token_bytes} bytes"
        )
    return token


def parse_update_request(
    payload: Any,
    *,
    limits: ShadowLimits = DEFAULT_LIMITS,
    writable: tuple[str, ...] = SECTIONS,
) -> UpdateRequest:
    """Validate an update request; ``writable`` names the sections this writer may patch.

    A node may write ``reported`` only: a request of a node that names ``desired`` is
    refused with 403.
    """
    if not isinstance(payload, dict):
        raise Rejection(ErrorCode.BAD_REQUEST, "an update must be a JSON object with a 'state' object")
    unknown = sorted(set(payload) - REQUEST_KEYS)
    if unknown:
        raise Rejection(ErrorCode.BAD_REQUEST, f"unknown field(s) {unknown}: use 'state', 'version', 'clientToken'")
    client_token = parse_client_token(payload, limits)
    state = payload.get("state")
    if not isinstance(state, dict):
        raise Rejection(ErrorCode.BAD_REQUEST, "'state' must be an object naming 'desired' and/or 'reported'")
    if not state:
        raise Rejection(ErrorCode.BAD_REQUEST, "'state' is empty: name 'desired' and/or 'reported'")
    version = payload.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        raise Rejection(ErrorCode.BAD_REQUEST, "'version' must be a non-negative integer")
    sections: dict[str, JSONObject | None] = {}
    for name, patch in state.items():
        if name not in SECTIONS:
            raise Rejection(ErrorCode.BAD_REQUEST, f"unknown section {name!r} in 'state': use 'desired' or 'reported'")
        if name not in writable:
            raise Rejection(ErrorCode.FORBIDDEN, f"this client may not write '{name}'; it may write {list(writable)}")
        if patch is not None and not isinstance(patch, dict):
            raise Rejection(ErrorCode.BAD_REQUEST, f"'state.{name}' must be an object or null")
        if patch is not None:
            if depth(patch) > limits.max_depth:
                raise Rejection(ErrorCode.BAD_REQUEST, f"'state.{name}' nests deeper than {limits.max_depth} levels")
            if _has_null_in_array(patch):
                raise Rejection(ErrorCode.BAD_REQUEST, f"'state.{name}' has an array holding null")
        sections[name] = patch
    return UpdateRequest(state=sections, version=version, client_token=client_token)


@dataclass(frozen=True)
class UpdateOutcome:
    """The document after an accepted update and the messages it causes."""

    previous: ShadowDocument
    document: ShadowDocument
    request: UpdateRequest

    @property
    def desired_changed(self) -> bool:
        return not json_equal(self.previous.desired, self.document.desired)

    def accepted_payload(self) -> JSONObject:
        """``shadow/update/accepted``: the applied patch, its metadata, version, timestamp."""
        now = self.document.timestamp
        body: JSONObject = {
            "state": {name: patch for name, patch in self.request.state.items()},
            "metadata": {name: _stamps(patch, now) if patch is not None else {"timestamp": now}
                         for name, patch in self.request.state.items()},
            "version": self.document.version,
            "timestamp": now,
        }
        if self.request.client_token is not None:
            body["clientToken"] = self.request.client_token
        return body

    def delta_payload(self) -> JSONObject | None:
        """``shadow/update/delta``: sent when desired changed and the delta is not empty."""
        if not self.desired_changed:
            return None
        delta = self.document.delta
        if not delta:
            return None
        return {"state": delta, "version": self.document.version, "timestamp": self.document.timestamp}

    def documents_payload(self) -> JSONObject:
        """``shadow/update/documents``: previous and current, for integrations."""
        return {
            "previous": self.previous.to_json(),
            "current": self.document.to_json(),
            "timestamp": self.document.timestamp,
        }


def apply_update(
    document: ShadowDocument,
    request: UpdateRequest,
    *,
    now: int,
    limits: ShadowLimits = DEFAULT_LIMITS,
) -> UpdateOutcome:
    """Apply a validated update; 409 on a version mismatch, 413 if the state grows too large."""
    if request.version is not None and request.version != document.version:
        raise Rejection(
            ErrorCode.CONFLICT,
            f"version conflict: the update names version {request.version}, the document is at "
            f"{document.version}; fetch it and retry",
        )
    sections = {"desired": document.desired, "reported": document.reported}
    metadata = dict(document.metadata)
    for name, patch in request.state.items():
        old = sections[name]
        if patch is None:
            sections[name] = {}
            metadata[name] = {}
        else:
            sections[name] = merge_patch(old, patch)
            metadata[name] = _metadata_after(metadata.get(name, {}), old, patch, now)
    size = state_size(sections["desired"], sections["reported"])
    if size > limits.max_state_bytes:
        raise Rejection(
            ErrorCode.TOO_LARGE,
            f"the document state would be {size} bytes, over the limit of {limits.max_state_bytes}",
        )
    updated = replace(
        document,
        desired=sections["desired"],
        reported=sections["reported"],
        metadata=metadata,
        version=document.version + 1,
        timestamp=now,
    )
    return UpdateOutcome(previous=document, document=updated, request=request)
