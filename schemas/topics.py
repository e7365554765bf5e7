"""Topic names of the shadow protocol and the rule of who may use which (DESIGN §4).

All topics of a node live under ``{root}/{ns}/{node}``. The root is ``tether/v1`` by
default; it is configurable so that several Tether installations (or test runs) can
share one broker without seeing each other's traffic.

The access rule is a pure function here so that the embedded broker, the generated
Mosquitto ACL and the tests all use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.names import is_valid_name, parse_node_identity, validate_name

DEFAULT_ROOT = "tether/v1"
CLOUD_SHARE_GROUP = "tether-cloud"


class Suffix(StrEnum):
    SHADOW_GET = "shadow/get"
    SHADOW_GET_ACCEPTED = "shadow/get/accepted"
    SHADOW_GET_REJECTED = "shadow/get/rejected"
    SHADOW_UPDATE = "shadow/update"
    SHADOW_UPDATE_ACCEPTED = "shadow/update/accepted"
    SHADOW_UPDATE_REJECTED = "shadow/update/rejected"
    SHADOW_UPDATE_DELTA = "shadow/update/delta"
    SHADOW_UPDATE_DOCUMENTS = "shadow/update/documents"
    RESOURCES_GET = "resources/get"
    RESOURCES_GET_ACCEPTED = "resources/get/accepted"
    RESOURCES_GET_REJECTED = "resources/get/rejected"
    STATUS = "status"
    FUNCTION_INVOKE = "functions/invoke"  # functions/{app}/{function}/invoke
    FUNCTION_RESULT = "functions/result"  # functions/{app}/{function}/result
    LOGS_REQUEST = "logs/request"  # cloud -> node: open, renew or close a log stream
    LOGS_DATA = "logs/data"  # node -> cloud: a chunk of a log stream
    EVENTS = "events"  # node -> cloud: app events (crashes, restarts...), deduplicated


# What a node may publish under its own root; it may subscribe to anything under it.
NODE_PUBLISHES = frozenset(
    {Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET, Suffix.STATUS, Suffix.FUNCTION_RESULT,
     Suffix.LOGS_DATA, Suffix.EVENTS}
)
# What the cloud consumes from every node.
CLOUD_CONSUMES = (Suffix.SHADOW_GET, Suffix.SHADOW_UPDATE, Suffix.RESOURCES_GET, Suffix.STATUS)
# Replies to a request go to the request's "/accepted" and "/rejected" topics.
REPLIES = {
    Suffix.SHADOW_GET: (Suffix.SHADOW_GET_ACCEPTED, Suffix.SHADOW_GET_REJECTED),
    Suffix.SHADOW_UPDATE: (Suffix.SHADOW_UPDATE_ACCEPTED, Suffix.SHADOW_UPDATE_REJECTED),
    Suffix.RESOURCES_GET: (Suffix.RESOURCES_GET_ACCEPTED, Suffix.RESOURCES_GET_REJECTED),
}


@dataclass(frozen=True)
class NodeTopic:
    """A topic under a node's root, parsed."""

    namespace: str
    node: str
    suffix: Suffix
    app: str | None = None
    function: str | None = None


def _valid_root(root: str) -> str:
    parts = root.split("/")
    if not root or any(not p or p in ("+", "#") or "\x00" in p for p in parts) or root.startswith("$"):
        raise ValueError(f"invalid topic root {root!r}: use non-empty levels without wildcards")
    return root


_SUFFIXES = {suffix.value: suffix for suffix in Suffix}  # a dict lookup is ~1 µs less than Suffix(...)


@dataclass(frozen=True)
class TopicScheme:
    """Builds and parses the topics of one Tether installation."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        _valid_root(self.root)

    # -- building --------------------------------------------------------------------
    def node_root(self, namespace: str, node: str) -> str:
        validate_name(namespace, kind="namespace")
        validate_name(node, kind="node name")
        return f"{self.root}/{namespace}/{node}"

    def topic(self, namespace: str, node: str, suffix: Suffix) -> str:
        if suffix in (Suffix.FUNCTION_INVOKE, Suffix.FUNCTION_RESULT):
            raise ValueError("use function_topic() for function topics")
        return f"{self.node_root(namespace, node)}/{suffix.value}"

    def function_topic(self, namespace: str, node: str, app: str, function: str, *, result: bool) -> str:
        validate_name(app, kind="app name")
        validate_name(function, kind="function name")
        last = "result" if result else "invoke"
        return f"{self.node_root(namespace, node)}/functions/{app}/{function}/{last}"

    def cloud_filters(self, *, share_group: str | None = None) -> list[str]:
        """Subscription filters of the cloud bridge; with a group, as shared subscriptions."""
        filters = [f"{self.root}/+/+/{s.value}" for s in CLOUD_CONSUMES]
        if share_group:
            validate_name(share_group, kind="share group")
            filters = [f"$share/{share_group}/{f}" for f in filters]
        return filters

    def node_publish_filters(self, namespace: str, node: str) -> list[str]:
        """The MQTT filters covering exactly what a node may publish (``node_may_publish``),
        for brokers that take the rule as a list (NATS permissions)."""
        root = self.node_root(namespace, node)
        return sorted(
            f"{root}/functions/+/+/result" if suffix == Suffix.FUNCTION_RESULT
            else f"{root}/{suffix.value}"
            for suffix in NODE_PUBLISHES
        )

    # -- parsing ---------------------------------------------------------------------
    def parse(self, topic: str) -> NodeTopic | None:
        """Parse a concrete topic under this root; None if it is not one of ours. On every
        message the cloud receives, so kept lean: names are checked by ``is_valid_name``,
        whose cache holds the fleet's names."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix):].split("/")
        if len(parts) < 3 or not is_valid_name(parts[0]) or not is_valid_name(parts[1]):
            return None
        namespace, node, rest = parts[0], parts[1], parts[2:]
        if rest[0] == "functions":
            if len(rest) != 4 or rest[3] not in ("invoke", "result"):
                return None
            app, function = rest[1], rest[2]
            if not (is_valid_name(app) and is_valid_name(function)):
                return None
            last = Suffix.FUNCTION_INVOKE if rest[3] == "invoke" else Suffix.FUNCTION_RESULT
            return NodeTopic(namespace, node, last, app, function)
        suffix = _SUFFIXES.get("/".join(rest))
        if suffix is None or suffix in (Suffix.FUNCTION_INVOKE, Suffix.FUNCTION_RESULT):
            return None
        return NodeTopic(namespace, node, suffix)

    # -- access rule -----------------------------------------------------------------
    def node_may_publish(self, identity: str | None, topic: str) -> bool:
        """A node (username ``NS/NODE``) publishes only its requests, under its own root."""
        owner = parse_node_identity(identity)
        parsed = self.parse(topic)
        return (
            owner is not None
            and parsed is not None
            and (parsed.namespace, parsed.node) == owner
            and parsed.suffix in NODE_PUBLISHES
        )

    def node_may_subscribe(self, identity: str | None, topic_filter: str) -> bool:
        """A node subscribes only under its own root (wildcards allowed below it)."""
        owner = parse_node_identity(identity)
        if owner is None or "\x00" in topic_filter:
            return False
        own_root = f"{self.root}/{owner[0]}/{owner[1]}"
        if not topic_filter.startswith(own_root + "/"):
            return False
        below = topic_filter[len(own_root) + 1:].split("/")
        # MQTT: '#' only as the last level; '+' and '#' only as a whole level.
        for i, level in enumerate(below):
            if "#" in level and (level != "#" or i != len(below) - 1):
                return False
            if "+" in level and level != "+":
                return False
        return True
