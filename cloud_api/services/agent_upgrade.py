"""Setting the agent version nodes should run: ``desired.sysapps.tether`` for a set of nodes.

Why it exists: agents upgrade themselves when desired names another version
(``schemas.sysapps``; the node side is ``edge_runtime.upgrading``). This module is the one
cloud-side way to ask for it, built for a wave engine to drive: ``target_for`` builds the
target of an uploaded version, ``set_agent_target`` writes
the target of any set of nodes through the batched write path
(``store.shadow_writing.locked_write``, ``BATCH`` documents per transaction, rows locked,
compare-and-swapped, one commit), publishing each node's update after its batch commits;
``agent_outcomes`` reads what each node reports, with ``schemas.sysapps.upgraded`` as the
gate (True: runs the version healthy; False: rolled back or failed; None: not yet).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, select
from sqlmodel import col
from sqlmodel import select as model_select

from cloud_api.agent_wheels import WHEELS_PATH, AgentWheels
from cloud_api.errors import NotFound
from cloud_api.mqtt.transport import Publisher
from cloud_api.services.shadows import publish_update
from cloud_api.store.engine import Store, table_of
from cloud_api.store.models import Node, Shadow
from cloud_api.store.shadow_writing import locked_write
from schemas.errors import Rejection
from schemas.labels import match_all, parse_selector
from schemas.shadow import ShadowDocument, ShadowLimits, UpdateOutcome, UpdateRequest, apply_update
from schemas.sysapps import (
    AGENT_KEY,
    DEFAULT_DEADLINE_SECONDS,
    SYSAPPS_KEY,
    AgentTarget,
    reported_agent,
    upgraded,
)
from schemas.topics import TopicScheme

log = logging.getLogger(__name__)

BATCH = 500
_SHADOWS = table_of(Shadow)


def target_for(wheels: AgentWheels, version: str, *, public_url: str, image: str = "",
               deadline_seconds: int = DEFAULT_DEADLINE_SECONDS) -> AgentTarget:
    """The target of ``version``: its stored wheel's URL and sha256 (404 with what to do if
    it was never uploaded), the image kube nodes run, the deadline to report healthy."""
    wheel = wheels.get(version)
    return AgentTarget(version, url=f"{public_url}{WHEELS_PATH}/{wheel.filename}",
                       sha256=wheel.sha256, image=image, deadline_seconds=deadline_seconds)


def select_nodes(store: Store, namespace: str, *, names: Collection[str] | None = None,
                 selector: str | None = None) -> list[str]:
    """The nodes of ``namespace`` named (404 for one that does not exist) and/or matching
    ``selector`` (Kubernetes label selector syntax); every node if neither is given."""
    with store.session() as session:
        rows = session.exec(model_select(Node.name, Node.labels)
                            .where(col(Node.namespace) == namespace)).all()
    labels = {name: node_labels or {} for name, node_labels in rows}
    chosen = set(labels) if names is None and selector is None else set()
    for name in names or ():
        if name not in labels:
            raise NotFound(f"node {namespace}/{name} not found")
        chosen.add(name)
    if selector is not None:
        matched = match_all({"_": parse_selector(selector)}, labels)
        chosen.update(node for node, apps in matched.items() if apps)
    return sorted(chosen)


def set_agent_target(
    store: Store, namespace: str, nodes: Collection[str], target: AgentTarget | None, *,
    publisher: Publisher, topics: TopicScheme, limits: ShadowLimits, now: int,
) -> list[str]:
    """Set (``None``: clear) ``desired.sysapps.tether`` of ``nodes``; the nodes whose desired
    changed, each published (``accepted``, ``delta``, ``documents``) after its batch commits."""
    value = None if target is None else target.to_json()
    names = sorted(set(nodes))
    updated: list[str] = []
    for start in range(0, len(names), BATCH):
        chunk = names[start:start + BATCH]

        def change(connection: Connection, documents: dict[tuple[str, str], ShadowDocument]
                   ) -> list[tuple[str, UpdateOutcome]]:
            return _retarget(documents, value, limits=limits, now=now)

        for node, outcome in locked_write(store, [(namespace, n) for n in chunk], change):
            publish_update(publisher, outcome, topics=topics, namespace=namespace, node=node)
            updated.append(node)
    return updated


def _retarget(documents: dict[tuple[str, str], ShadowDocument], value: dict[str, Any] | None,
              *, limits: ShadowLimits, now: int) -> list[tuple[str, UpdateOutcome]]:
    outcomes = []
    for key, document in documents.items():
        sysapps = document.desired.get(SYSAPPS_KEY)
        current = sysapps.get(AGENT_KEY) if isinstance(sysapps, dict) else None
        if current == value:
            continue
        request = UpdateRequest(state={"desired": {SYSAPPS_KEY: {AGENT_KEY: value}}})
        try:
            outcome = apply_update(document, request, now=now, limits=limits)
        except Rejection as exc:  # 413: the document is full; the node keeps its version
            log.error("cannot set the agent version of %s/%s: %s", key[0], key[1], exc.message)
            continue
        documents[key] = outcome.document
        outcomes.append((key[1], outcome))
    return outcomes


def agent_outcomes(connection: Connection, namespace: str, nodes: Collection[str],
                   version: str | None) -> dict[str, dict[str, Any]]:
    """Per node: what it reports of its agent and the gate for ``version`` (see the module
    docstring); the shape a wave engine reads."""
    query = (select(_SHADOWS.c.node, _SHADOWS.c.reported)
             .where(_SHADOWS.c.namespace == namespace,
                    _SHADOWS.c.node.in_(sorted(set(nodes)))))
    out: dict[str, dict[str, Any]] = {}
    for node, reported in connection.execute(query):
        report = reported_agent(reported or {})
        out[node] = {"agent": None if report is None else report.to_json(),
                     "upgraded": None if version is None else upgraded(reported or {}, version)}
    return out
