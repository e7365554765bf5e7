"""The engine: turns the desired apps into actions and has a backend carry them out.

Plan, then act (STYLE §2). Pure modules first -- ``planning`` (desired + observed +
cache -> ``Fetch``/``Apply``/``Remove``; what the cache may drop) and ``status`` (what
is reported under ``apps`` and ``appstats``) -- then the shell: ``resources`` (parsed
resources over the cache), ``acting`` (the actions against the backend and the cloud,
the ``resources/get`` requests in flight), ``reporting`` (the full reported state and
``properties.json``) and ``engine`` (``Engine``: the reconciler hook and its thread).
"""

from __future__ import annotations

from edge_runtime.engine.engine import Engine
from edge_runtime.engine.planning import Action, Apply, Fetch, Remove, plan

__all__ = ["Action", "Apply", "Engine", "Fetch", "Remove", "plan"]
