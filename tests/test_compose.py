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


def test_one_image_name_everywhere_tagged_with_the_package_version() -> None:
    """compose builds the image the kube manifest and the kube function runtimes name."""
    from schemas.images import TETHER_IMAGE

    pyproject = (COMPOSE.parent / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None and TETHER_IMAGE.endswith(f":{version.group(1)}")
    stack = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    assert stack["services"]["cloud"]["image"] == TETHER_IMAGE
    assert f"-t {TETHER_IMAGE} " in (COMPOSE / "Dockerfile").read_text()
