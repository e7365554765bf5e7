"""Label and field selectors, parsed and matched the way the API server does.

A backend prunes what it manages by listing with a label selector; if the fake matched
selectors more loosely than Kubernetes, pruning bugs would pass here and delete a
stranger's objects on a real node. So the grammar is the server's: ``a=b``, ``a==b``,
``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, comma-joined
(AND). ``!=`` and ``notin`` match objects that lack the label. Field selectors support
``=``, ``==`` and ``!=`` on the fields each type allows; others are refused with 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
LABEL_VALUE = re.compile(rf"^({_NAME})?$")

_KEY = r"(?P<key>[^\s!=<>(),]+)"
_FORMS = (
    (re.compile(rf"^\s*!\s*{_KEY}\s*$"), "!"),
    (re.compile(rf"^\s*{_KEY}\s*$"), "exists"),
    (re.compile(rf"^\s*{_KEY}\s*(?P<op>==|!=|=)\s*(?P<values>[^\s,()]*)\s*$"), None),
    (re.compile(rf"^\s*{_KEY}\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$"), None),
    (re.compile(rf"^\s*{_KEY}\s*(?P<op>[<>])\s*(?P<values>-?\d+)\s*$"), None),
)


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "<", ">"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present or value is None or not re.fullmatch(r"-?\d+", value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == ">" else int(value) < bound


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()] if selector.strip() else []


def _requirement(text: str) -> Requirement:
    for pattern, fixed_op in _FORMS:
        match = pattern.match(text)
        if match is None:
            continue
        key = match["key"]
        if not LABEL_KEY.match(key):
            raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
        if fixed_op is not None:
            return Requirement(key, fixed_op)
        op = "=" if match["op"] == "==" else match["op"]
        values = tuple(v.strip() for v in match["values"].split(","))
        if op in ("in", "notin") and values == ("",):
            raise SelectorError(f"unable to parse requirement: {text.strip()!r}: empty set")
        for value in values:
            if not LABEL_VALUE.match(value):
                raise SelectorError(f"unable to parse requirement: invalid value {value!r}")
        return Requirement(key, op, values)
    raise SelectorError(f"unable to parse requirement: {text.strip()!r}")


def parse_label_selector(selector: str) -> tuple[Requirement, ...]:
    return tuple(_requirement(part) for part in _split(selector))


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for part in self.path.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        actual = "" if current is None else str(current)
        return (actual == self.value) != self.negate


def parse_field_selector(selector: str, allowed: tuple[str, ...]) -> tuple[FieldRequirement, ...]:
    requirements = []
    for part in _split(selector):
        match = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*([^,]*?)\s*", part)
        if match is None:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        path, op, value = match.groups()
        if path not in ("metadata.name", "metadata.namespace", *allowed):
            raise SelectorError(f'field label not supported: {path}')
        requirements.append(FieldRequirement(path, value, negate=op == "!="))
    return tuple(requirements)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)
