"""Fixtures of the ingestion tests: every catalogue topic under a fresh prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfe.settings import Settings
from tests.kafka_helpers import catalogue_topics


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    """A fresh topic prefix with the whole catalogue under it, deleted after the test."""
    with catalogue_topics(stack) as prefix:
        yield prefix
