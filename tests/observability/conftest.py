"""promtool and amtool, fetched on demand by scripts/fetch-debian-tool as `make tools` does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.observability.support import AMTOOL, FETCH_TOOL, PROMTOOL


def _fetched(package: str, tool: Path) -> Path:
    if not tool.exists():
        result = subprocess.run(
            [str(FETCH_TOOL), package, tool.name],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"scripts/fetch-debian-tool failed:\n{result.stdout}{result.stderr}")
    return tool


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The promtool binary, fetched first when missing (as `make tools` does)."""
    return _fetched("prometheus", PROMTOOL)


@pytest.fixture(scope="session")
def amtool() -> Path:
    """The amtool binary, fetched first when missing (as `make tools` does)."""
    return _fetched("prometheus-alertmanager", AMTOOL)
