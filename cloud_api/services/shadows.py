"""Shadow reads and updates; every update is a compare-and-swap on the document's version.

Several cloud replicas may serve one document (MQTT shared subscriptions spread a node's
messages over them; REST requests land anywhere), so no replica may read, merge and write
back blindly. ``update_shadow`` reads the document, applies the update with the pure
algebra of ``schemas.shadow``, and writes with ``UPDATE ... WHERE version = <read version>``.
If another writer got there first the row count is 0; then a request that named a
``version`` is refused with 409 (it was written against a document that no longer exists),
and one that did not is merged again onto the newer document. Nothing is lost, nothing is
locked, and the same code is correct on SQLite and PostgreSQL.

``publish_update`` sends the messages an accepted update causes, whoever wrote it (a node
over MQTT, REST, matching), through the ``Publisher`` it is handed.
"""

from __future__ import annotations

import random
import time
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from cloud_api.errors import Busy, NotFound
from cloud_api.mqtt.transport import Publisher
from cloud_api.store import shadow_history
from cloud_api.store.models import Shadow
from schemas.names import validate_name
from schemas.payloads import encode_json
from schemas.shadow import (
    DEFAULT_LIMITS,
    ShadowDocument,
    ShadowLimits,
    UpdateOutcome,
    apply_update,
    parse_update_request,
)
from schemas.topics import Suffix, TopicScheme

MAX_ATTEMPTS = 64
_BACKOFF_SECONDS = 0.002


def get_document(session: Session, namespace: str, node: str) -> ShadowDocument:
    """The current document of a node; 404 if there is no such node."""
    validate_name(namespace, kind="namespace")
    validate_name(node, kind="node name")
    row = session.get(Shadow, (namespace, node), populate_existing=True)
    if row is None:
        raise NotFound(f"node {namespace}/{node} not found")
    return row.document()


def update_shadow(
    session: Session,
    namespace: str,
    node: str,
    payload: Any,
    *,
    writable: tuple[str, ...],
    now: int,
    limits: ShadowLimits = DEFAULT_LIMITS,
    writer: str = shadow_history.NODE_WRITER,
) -> UpdateOutcome:
    """Validate and apply an update request to a node's shadow (see the module docstring).

    ``writable`` names the sections this writer may patch: ``("desired",)`` for REST,
    ``("reported",)`` for a node. Raises Rejection 400/403/404/409/413, or ``Busy`` (429)
    when the swap lost ``MAX_ATTEMPTS`` times in a row. ``writer`` is who, for the
    node's history (recorded in the same transaction).
    """
    request = parse_update_request(payload, limits=limits, writable=writable)
    for attempt in range(MAX_ATTEMPTS):
        current = get_document(session, namespace, node)
        outcome = apply_update(current, request, now=now, limits=limits)  # 409 on a stale version
        swapped = _compare_and_swap(
            session, namespace, node, expected=current.version, document=outcome.document
        )
        if swapped:
            row = shadow_history.revision(namespace, node, outcome, writer=writer)
            shadow_history.record(session.connection(), [row])
            session.commit()
            return outcome
        session.rollback()
        # Lost to a concurrent writer: the next read sees its version. Back off a little,
        # with jitter, so that a crowd of writers does not collide again in lockstep.
        time.sleep(random.uniform(0, _BACKOFF_SECONDS * min(attempt + 1, 16)))
    raise Busy(
        f"shadow {namespace}/{node} changed {MAX_ATTEMPTS} times during this update; retry",
        retry_after=0.5,
    )


def _compare_and_swap(
    session: Session, namespace: str, node: str, *, expected: int, document: ShadowDocument
) -> bool:
    result = session.exec(
        update(Shadow)
        .where(
            col(Shadow.namespace) == namespace,
            col(Shadow.node) == node,
            col(Shadow.version) == expected,
        )
        .values(
            desired=document.desired,
            reported=document.reported,
            meta=document.metadata,
            version=document.version,
            timestamp=document.timestamp,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


# -- the messages of an update ------------------------------------------------------------
def publish_update(
    publisher: Publisher, outcome: UpdateOutcome, *, topics: TopicScheme, namespace: str, node: str
) -> None:
    """The messages of an accepted update: ``accepted``, ``delta`` if any, ``documents``."""
    # a change of desired must reach the node (QoS 1); the answer to a node's own report
    # and the documents of integrations are sent again if asked again (QoS 0)
    desired = 1 if outcome.desired_changed else 0
    messages = [
        (Suffix.SHADOW_UPDATE_ACCEPTED, outcome.accepted_payload(), desired),
        (Suffix.SHADOW_UPDATE_DELTA, outcome.delta_payload(), 1),
        (Suffix.SHADOW_UPDATE_DOCUMENTS, outcome.documents_payload(), 0),
    ]
    for suffix, body, qos in messages:
        if body is not None:
            publisher.publish(topics.topic(namespace, node, suffix), encode_json(body), qos=qos)


def clear_status(publisher: Publisher, *, topics: TopicScheme, namespace: str, node: str) -> None:
    """Remove a deleted node's retained ``status`` (an empty retained message clears it)."""
    publisher.publish(topics.topic(namespace, node, Suffix.STATUS), b"", retain=True)
