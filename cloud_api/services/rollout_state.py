"""The stored state of rollouts, as the writers of apps and matching see it.

Why it exists apart from ``rollout_waves``: three parts touch a rollout's rows and must
not import each other in a circle. Writing an app (``services.resources``) starts or
replaces its rollout in the same transaction as the new version (``version_written``),
deleting the app forgets it (``forget``); matching (``services.matching``) asks which
version each node should hold while a rollout is under way (``app_pins``); the wave engine
(``services.rollout_waves``) advances it. This module is the rows, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import Session

from cloud_api.services.waves import Phase, pinned_value
from cloud_api.store.engine import table_of
from cloud_api.store.models import Rollout, RolloutNode

APP_KIND = "app"
SUBJECT_KEY = "subject"
"""A key of a rollout's stored strategy that is not ``RolloutStrategy``: what its subject
keeps there (the agent rollout's nodes and targets, say); the engine ignores it."""
ROLLOUTS = table_of(Rollout)
ROLLOUT_NODES = table_of(RolloutNode)


@dataclass(frozen=True)
class Pin:
    """What nodes should hold of one app while its rollout is not complete."""

    phase: Phase
    target: str
    stable: str | None
    admitted: frozenset[str]

    def value(self, node: str) -> str | None:
        return pinned_value(self.phase, admitted=node in self.admitted, target=self.target,
                            stable=self.stable)


def app_pins(session: Session, namespace: str) -> dict[str, Pin]:
    """The apps of ``namespace`` with a rollout that is not complete, and their pins."""
    connection = session.connection()
    rows = connection.execute(
        select(ROLLOUTS.c.name, ROLLOUTS.c.phase, ROLLOUTS.c.target, ROLLOUTS.c.stable)
        .where(ROLLOUTS.c.namespace == namespace, ROLLOUTS.c.kind == APP_KIND,
               ROLLOUTS.c.phase != Phase.COMPLETE.value)
    ).all()
    if not rows:
        return {}
    admitted: dict[str, set[str]] = {name: set() for name, *_ in rows}
    for name, node in connection.execute(
        select(ROLLOUT_NODES.c.name, ROLLOUT_NODES.c.node)
        .where(ROLLOUT_NODES.c.namespace == namespace, ROLLOUT_NODES.c.kind == APP_KIND,
               ROLLOUT_NODES.c.name.in_(sorted(admitted)))
    ):
        admitted[name].add(node)
    return {name: Pin(Phase(phase), target, stable, frozenset(admitted[name]))
            for name, phase, target, stable in rows}


def version_written(
    session: Session, namespace: str, name: str, *, previous: str | None, target: str,
    strategy: dict[str, Any] | None, now: int, kind: str = APP_KIND,
) -> None:
    """A new version ``target`` of ``name`` was stored (the caller commits).

    With a strategy, a rollout to it starts from the last version known healthy: the
    target of the last rollout if it completed, else that rollout's own stable version,
    else ``previous`` (what every node was given at once). Without one, any rollout is
    dropped and matching gives every node the new version at once.
    """
    row = session.get(Rollout, (namespace, kind, name))
    forget(session, namespace, name, kind=kind, keep_row=strategy is not None)
    if strategy is None:
        return
    if row is None:
        stable = previous
        row = Rollout(namespace=namespace, kind=kind, name=name, target=target, phase="",
                      started_at=now, updated_at=now)
    else:
        stable = row.target if row.phase == Phase.COMPLETE.value else row.stable
    row.target, row.stable, row.phase = target, stable, Phase.PROGRESSING.value
    row.wave, row.acknowledged, row.strategy = -1, 0, strategy
    row.message = f"rolling out version {target} from {stable or 'nothing'}: waiting for wave 1"
    row.started_at = row.updated_at = now
    session.add(row)


def forget(session: Session, namespace: str, name: str, *, kind: str = APP_KIND,
           keep_row: bool = False) -> None:
    """Drop a rollout's admitted nodes (and, unless ``keep_row``, the rollout)."""
    connection = session.connection()
    connection.execute(delete(ROLLOUT_NODES).where(
        ROLLOUT_NODES.c.namespace == namespace, ROLLOUT_NODES.c.kind == kind,
        ROLLOUT_NODES.c.name == name))
    if not keep_row:
        connection.execute(delete(ROLLOUTS).where(
            ROLLOUTS.c.namespace == namespace, ROLLOUTS.c.kind == kind, ROLLOUTS.c.name == name))
