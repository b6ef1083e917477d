"""promtool, fetched on demand by scripts/fetch-promtool as `make tools` does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.observability.support import FETCH_PROMTOOL, PROMTOOL


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The promtool binary, fetched first when missing (as `make tools` does)."""
    if not PROMTOOL.exists():
        result = subprocess.run(
            [str(FETCH_PROMTOOL)], capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"scripts/fetch-promtool failed:\n{result.stdout}{result.stderr}")
    return PROMTOOL
