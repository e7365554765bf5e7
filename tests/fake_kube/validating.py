"""What the fake refuses: the OpenAPI schema (strict) plus the API server's own checks.

Every object the server would store (create, replace, patch and apply results, injected
statuses) goes through ``kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)``
-- the newest schema the installed kubernetes-validate ships -- so an unknown field, a
wrong type or a missing required field is a 422 ``Invalid``. The schema cannot say
everything the real server checks, so ``_semantic_errors`` adds the checks that catch real
manifest bugs: names, label syntax, container images, volume mounts naming a volume,
workload selectors matching their template, unique Service port names, data keys, and
immutable fields on update. Note one deliberate difference: the real server's default
``fieldValidation`` drops unknown fields with a warning; the fake always refuses them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils

from tests.fake_kube.resources import ResourceType
from tests.fake_kube.selectors import LABEL_KEY, LABEL_VALUE, Requirement, labels_match
from tests.fake_kube.statuses import KubeError, invalid

SCHEMA_VERSION = ".".join(kubernetes_validate.latest_version().split(".")[:2])

# kubernetes_validate re-reads and re-parses its 1.8 MB _definitions.json on every call
# (~10 ms, most of a fake request). The files are immutable package data and the parsed
# schemas are only read, so remembering the reader's results changes nothing but speed.
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = functools.cache(
        kubernetes_validate.utils.schema_contents
    )

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_POD_SPEC_AT = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
}

Errors = list[tuple[str, str]]


def normalize(obj: dict[str, Any], rt: ResourceType) -> dict[str, Any]:
    """Defaults the server fills before validating: apiVersion/kind, Secret stringData."""
    obj.setdefault("apiVersion", rt.api_version)
    obj.setdefault("kind", rt.kind)
    if obj["apiVersion"] != rt.api_version or obj["kind"] != rt.kind:
        raise KubeError(
            "BadRequest",
            f"the body is {obj['apiVersion']}, Kind={obj['kind']} but the request is for "
            f"{rt.api_version}, Kind={rt.kind}",
        )
    if rt.kind == "Secret":
        for key, value in (obj.pop("stringData", None) or {}).items():
            obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(str(value), validate=True)
            except binascii.Error as exc:
                raise KubeError(
                    "BadRequest", f"Secret data[{key!r}] is not base64: {exc}"
                ) from None
    return obj


def validate(obj: dict[str, Any], rt: ResourceType, old: dict[str, Any] | None = None) -> None:
    """Raise 422 ``Invalid`` with one cause per problem (kubernetes_validate reports only
    the first schema violation; the server's own checks run once the schema is met)."""
    errors: Errors = []
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        errors.append((".".join(str(part) for part in exc.path), str(exc.message)))
    if not errors:  # the semantic checks assume the schema's shapes
        errors += _semantic_errors(obj, rt, old)
    if errors:
        raise invalid(rt, obj.get("metadata", {}).get("name", ""), errors)


def _semantic_errors(obj: dict[str, Any], rt: ResourceType, old: dict[str, Any] | None) -> Errors:
    errors: Errors = []
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    pattern, limit = (_LABEL, 63) if rt.kind in ("Namespace", "Service") else (_SUBDOMAIN, 253)
    if rt.group == "rbac.authorization.k8s.io":
        pattern = re.compile(r"^[^/%]+$")
    if not name:
        errors.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > limit or not pattern.match(name) or name in (".", ".."):
        errors.append(("metadata.name", f"Invalid value: {name!r}: not a valid name"))
    for key, value in (meta.get("labels") or {}).items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(str(value)):
            errors.append((f"metadata.labels[{key}]", f"Invalid value: {key}={value!r}"))
    for key in meta.get("annotations") or {}:
        if not LABEL_KEY.match(key):
            errors.append((f"metadata.annotations[{key}]", "Invalid value: not a qualified name"))
    if rt.kind in _POD_SPEC_AT:
        errors += _pod_spec_errors(obj, _POD_SPEC_AT[rt.kind])
    if rt.kind in ("Deployment", "DaemonSet"):
        errors += _selector_errors(obj.get("spec", {}))
    if rt.kind == "Service":
        ports = obj.get("spec", {}).get("ports") or []
        names = [port.get("name") for port in ports]
        if len(ports) > 1 and (None in names or len(set(names)) != len(names)):
            errors.append(("spec.ports", "Required value: ports need distinct names"))
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {} if rt.kind in ("ConfigMap", "Secret") else {}:
            if not _DATA_KEY.match(key) or len(key) > 253:
                errors.append((f"{field}[{key}]", "Invalid value: not a valid config key"))
    if old is not None:
        for path in rt.immutable:
            if _at(obj, path) != _at(old, path):
                errors.append((".".join(path), "Invalid value: field is immutable"))
    return errors


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _pod_spec_errors(obj: dict[str, Any], at: tuple[str, ...]) -> Errors:
    spec = _at(obj, at) or {}
    where = ".".join(at)
    errors: Errors = []
    volumes = {volume.get("name") for volume in spec.get("volumes") or []}
    for field in ("initContainers", "containers"):
        seen: set[str] = set()
        for index, container in enumerate(spec.get(field) or []):
            prefix = f"{where}.{field}[{index}]"
            cname = container.get("name", "")
            if not _LABEL.match(cname) or len(cname) > 63:
                errors.append((f"{prefix}.name", f"Invalid value: {cname!r}"))
            if cname in seen:
                errors.append((f"{prefix}.name", f"Duplicate value: {cname!r}"))
            seen.add(cname)
            if not container.get("image"):
                errors.append((f"{prefix}.image", "Required value"))
            for position, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    problem = f"Not found: {mount.get('name')!r}"
                    errors.append((f"{prefix}.volumeMounts[{position}].name", problem))
    return errors


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def _selector_errors(spec: dict[str, Any]) -> Errors:
    selector = spec.get("selector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return [("spec.selector", "Invalid value: empty selector is invalid for this workload")]
    requirements = [
        Requirement(key, "=", (str(value),))
        for key, value in selector.get("matchLabels", {}).items()
    ]
    for at, expression in enumerate(selector.get("matchExpressions") or []):
        op = _OPERATORS.get(expression.get("operator", ""))
        if op is None:
            field = f"spec.selector.matchExpressions[{at}].operator"
            return [(field, f"Unsupported value: {expression.get('operator')!r}")]
        values = tuple(expression.get("values") or ())
        requirements.append(Requirement(expression["key"], op, values))
    labels = _at(spec, ("template", "metadata", "labels")) or {}
    if not labels_match(tuple(requirements), labels):
        problem = "Invalid value: `selector` does not match template `labels`"
        return [("spec.template.metadata.labels", problem)]
    return []
