"""Shared fixtures: settings, and the real local stack (started when it is not running)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sfe import db
from sfe import stack as local_stack
from sfe.settings import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The local Kafka broker and PostgreSQL cluster, up and migrated."""
    if not all(status.running for status in local_stack.status(settings)):
        local_stack.up(settings)
    db.upgrade(settings)
    return settings


@pytest.fixture
def topic_name(settings: Settings) -> Iterator[str]:
    """A fresh, unique topic name per test, deleted afterwards."""
    from tests.kafka_helpers import delete_topics_with_prefix

    name = f"test.{uuid.uuid4().hex[:12]}"
    yield name
    delete_topics_with_prefix(settings, name)
