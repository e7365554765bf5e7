"""An operator's hand on a rollout (pause, resume, undo) and what it shows (status).

Why it exists apart from ``rollout_waves``: that module advances rollouts in the
background; this one is what REST and the CLI call. Each action takes the rollout's row
lock (waiting for it: a step in progress finishes first) and changes its phase; the next
step of the background loop reads the new phase (a step judged before it is not written,
see ``rollout_waves._advance_one``). Undo sets every node the rollout touched back to its
stable version through the rollout's ``Subject``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlmodel import Session

from cloud_api.errors import CloudError, NotFound
from cloud_api.services.rollout import app_rollout
from cloud_api.services.rollout_state import APP_KIND, ROLLOUTS
from cloud_api.services.rollout_waves import (
    SUBJECTS,
    AfterCommit,
    Subject,
    locked,
    read_records,
    read_row,
)
from cloud_api.services.waves import NodeRecord, Outcome, Phase
from cloud_api.store.engine import Store
from schemas.errors import ErrorCode


def _act(store: Store, namespace: str, name: str, *, kind: str, now: int,
         action: str, subject: Subject) -> dict[str, Any]:
    key = (namespace, kind, name)
    after: AfterCommit | None = None
    with locked(store) as session:
        connection = session.connection()
        row = read_row(connection, key, lock="wait")
        if row is None:
            raise NotFound(f"{kind} {namespace}/{name} has no rollout: give it spec.rollout and "
                           "apply a new version")
        phase = Phase(row["phase"])
        values: dict[str, Any] = {"updated_at": now}
        records = read_records(connection, key)
        if action == "pause":
            if phase is not Phase.PROGRESSING:
                raise CloudError(f"the rollout of {name} is {phase.value}: only a progressing "
                                 "rollout can be paused", code=ErrorCode.CONFLICT)
            values.update(phase=Phase.PAUSED.value, message=f"paused by an operator in wave "
                                                             f"{row['wave'] + 1}")
        elif action == "resume":
            if phase is not Phase.PAUSED:
                raise CloudError(f"the rollout of {name} is {phase.value}: only a paused rollout "
                                 "can be resumed (after an undo, apply a new version)",
                                 code=ErrorCode.CONFLICT)
            failed = sum(r.outcome is Outcome.FAILED for r in records.values())
            values.update(phase=Phase.PROGRESSING.value, acknowledged=failed,
                          message=f"resumed by an operator in wave {row['wave'] + 1} "
                                  f"({failed} failure(s) accepted)")
        else:  # undo
            if phase is Phase.ROLLED_BACK:
                raise CloudError(f"the rollout of {name} is already rolled back",
                                 code=ErrorCode.CONFLICT)
            touched = sorted(set(records) | set(subject.scope(session, namespace, name)))
            values.update(phase=Phase.ROLLED_BACK.value,
                          message=f"rolled back by an operator to {row['stable'] or 'nothing'}")
        connection.execute(update(ROLLOUTS).where(
            ROLLOUTS.c.namespace == namespace, ROLLOUTS.c.kind == kind,
            ROLLOUTS.c.name == name).values(values))
        if action == "undo":  # once the row says rolled back: the subject reads it
            after = subject.assign(session, namespace, name, touched, now=now)
    if after is not None:
        after()
    return {"phase": values.get("phase", phase.value), "message": values.get("message", "")}


def pause(store: Store, namespace: str, name: str, *, now: int, kind: str = APP_KIND,
          subjects: Mapping[str, Subject] = SUBJECTS) -> dict[str, Any]:
    return _act(store, namespace, name, kind=kind, now=now, action="pause", subject=subjects[kind])


def resume(store: Store, namespace: str, name: str, *, now: int, kind: str = APP_KIND,
           subjects: Mapping[str, Subject] = SUBJECTS) -> dict[str, Any]:
    return _act(store, namespace, name, kind=kind, now=now, action="resume", subject=subjects[kind])


def undo(store: Store, namespace: str, name: str, *, now: int, kind: str = APP_KIND,
         subjects: Mapping[str, Subject] = SUBJECTS) -> dict[str, Any]:
    """Every node touched goes back to the last healthy version (the rollout's stable)."""
    return _act(store, namespace, name, kind=kind, now=now, action="undo", subject=subjects[kind])


# -- status ---------------------------------------------------------------------------------
def rollout_of(session: Session, namespace: str, name: str, *,
               kind: str = APP_KIND) -> tuple[dict[str, Any] | None, dict[str, NodeRecord]]:
    """A rollout's row (None: there is none) and its admitted nodes, of any kind."""
    connection = session.connection()
    row = read_row(connection, (namespace, kind, name), lock=None)
    return (dict(row) if row is not None else None,
            read_records(connection, (namespace, kind, name)) if row is not None else {})


def rollout_status(session: Session, namespace: str, name: str) -> dict[str, Any]:
    """An app's rollout: phase, versions, wave, and each matched node's outcome and report."""
    report = app_rollout(session, namespace, name)  # 404 if no such app
    row, records = rollout_of(session, namespace, name)
    nodes = []
    for entry in report["nodes"]:
        record = records.get(entry["node"])
        # the wave's cause when it judged the node, else the cause the node reports
        nodes.append({**entry, "wave": record.wave + 1 if record else None,
                      "outcome": record.outcome.value if record else None,
                      "cause": (record.cause if record else "") or entry.get("cause") or ""})
    outcomes = {outcome.value: sum(r.outcome is outcome for r in records.values())
                for outcome in Outcome}
    body: dict[str, Any] = {"app": name, "version": report["version"], "counts": report["counts"],
                            "nodes": nodes}
    if row is None:
        return {**body, "strategy": None, "phase": "allAtOnce", "target": report["version"],
                "stable": None, "wave": None, "message": "no spec.rollout: every node at once",
                "outcomes": outcomes}
    return {**body, "strategy": row["strategy"], "phase": row["phase"], "target": row["target"],
            "stable": row["stable"], "wave": row["wave"] + 1, "message": row["message"],
            "outcomes": outcomes, "startedAt": row["started_at"], "updatedAt": row["updated_at"]}

