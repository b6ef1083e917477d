"""Fixtures of the ingestion tests: every catalogue topic under a fresh prefix."""

from __future__ import annotations

import uuid

import pytest

from sfe.settings import Settings
from streams.topic_admin import TopicAdmin
from streams.topics import catalogue


@pytest.fixture
def prefix(stack: Settings) -> str:
    """A fresh topic prefix with the whole catalogue created under it (``sfe topics ensure``)."""
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    TopicAdmin(stack.kafka_bootstrap).ensure(catalogue(prefix))
    return prefix
