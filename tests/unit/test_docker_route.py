"""The container route (docker/): the image holds every package, services find their inputs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def copied_into_image() -> set[str]:
    text = (DOCKER / "Dockerfile").read_text()
    return {match for match in re.findall(r"^COPY (\S+) \./\1$", text, flags=re.MULTILINE)}


def test_the_image_copies_every_package_the_distribution_declares() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= copied_into_image()


def test_services_that_load_models_share_the_volume_training_fills() -> None:
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert services["train"]["command"][:2] == ["train", "--all"]
    assert "models:/var/lib/sfe/models" in services["train"]["volumes"]
    assert "models:/var/lib/sfe/models" in services["worker"]["volumes"]
    assert "SFE_MODEL_DIR=/var/lib/sfe/models" in (DOCKER / "Dockerfile").read_text()


def test_salesforce_settings_template_names_real_settings() -> None:
    from sfe.settings import Settings

    names = {
        line.split("=", 1)[0]
        for line in (DOCKER / "salesforce.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    known = {f"SFE_{field.upper()}" for field in Settings.model_fields}
    assert names and names <= known
