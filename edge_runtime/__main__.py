"""``python -m edge_runtime``: the edge commands without the root ``tether`` command."""

from __future__ import annotations

from edge_runtime.cli import app

app(prog_name="tether edge")
