"""Fixtures of the worker tests: the catalogue under a fresh prefix, trained models, workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sfe.settings import Settings
from tests.kafka_helpers import catalogue_topics
from tests.workers.support import WorkerProcess


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    """Every catalogue topic under a fresh prefix, deleted (with the worker's own) afterwards."""
    with catalogue_topics(stack, "wk") as prefix:
        yield prefix


@pytest.fixture
def spawn(
    prefix: str, registry_root: Path, trained: dict[str, Any], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``sfe <args>`` against the test's topics and models; stopped after the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        environment = {
            "SFE_TOPIC_PREFIX": prefix,
            "SFE_MODEL_DIR": str(registry_root),
            "SFE_STATE_DIR": str(tmp_path / "state"),
            "SFE_METRICS_PORT": "0",
            "SFE_LOG_LEVEL": "WARNING",
            **env,
        }
        process = WorkerProcess(args, environment, tmp_path / f"process-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
