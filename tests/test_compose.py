"""compose/ cannot be run here (no Docker engine): check it names only what exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tether import build_app

COMPOSE = Path(__file__).resolve().parents[1] / "compose"


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    root = COMPOSE.parent
    for line in (COMPOSE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), f"Dockerfile copies missing {source}"


def test_compose_commands_use_real_flags() -> None:
    stack = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    command = stack["services"]["cloud"]["command"]
    assert command[:2] == ["cloud", "serve"]
    result = CliRunner().invoke(build_app("cloud"), ["cloud", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in command[2:]:
        name = flag.split("=", 1)[0]
        assert re.search(rf"{re.escape(name)}\b", result.output), f"tether cloud serve has no {name}"
