"""Rollouts in progress (or done): a row per rollout, a row per node it admitted.

Why they are stored: a rollout lasts minutes to days and outlives any cloud process. Its
wave, phase and every admitted node's outcome are rows, so a replica that restarts (or
another one) takes it up where it was; ``services.rollout_waves`` locks the rollout's row
while it advances it, so only one replica moves a rollout at a time.

A rollout drives one value per node: ``kind`` says which (``app``: ``desired.apps.NAME``;
other kinds, e.g. the agent's version, plug in through ``services.rollout_waves.Subject``).
``stable`` is the last value known healthy (None: the node holds none), ``target`` the one
being rolled out; ``strategy`` the ``schemas.resources.RolloutStrategy`` it follows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Text
from sqlmodel import Field, SQLModel


class Rollout(SQLModel, table=True):
    __tablename__ = "rollouts"

    namespace: str = Field(primary_key=True, max_length=63)
    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=63)
    target: str = Field(max_length=64)
    stable: str | None = Field(default=None, max_length=64)
    phase: str = Field(max_length=16, index=True)
    wave: int = -1
    acknowledged: int = 0
    strategy: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    message: str = Field(default="", sa_type=Text)
    started_at: int
    updated_at: int


class RolloutNode(SQLModel, table=True):
    __tablename__ = "rollout_nodes"

    namespace: str = Field(primary_key=True, max_length=63)
    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=63)
    node: str = Field(primary_key=True, max_length=63)
    wave: int
    admitted_at: int
    outcome: str = Field(max_length=16)
    running_since: int | None = None
    restarts: int | None = None
    cause: str = Field(default="", sa_type=Text)
