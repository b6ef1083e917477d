"""Shared fixtures: settings, and the real local stack (started when it is not running)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sfe import db
from sfe import stack as local_stack
from sfe.privacy.setup import ensure_local_master_key
from sfe.settings import Settings, load_settings

if TYPE_CHECKING:
    from ml.registry import Registry
    from ml.training.pipeline import TrainResult

#: Rows of synthetic training data for the session's small models.
SMALL_ROWS = 2500


def pytest_configure(config: pytest.Config) -> None:
    """Every process the tests start seals personal data under the local stack's master key.

    Tests give processes their own state directories, which hold no key of their own;
    the variable points them at the stack's (made here if ``sfe stack up`` has not yet).
    """
    if "SFE_PRIVACY_MASTER_KEY" not in os.environ:
        key_file = ensure_local_master_key(load_settings())
        os.environ.setdefault("SFE_PRIVACY_MASTER_KEY_FILE", str(key_file))


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


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the session's model registry."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def registry(registry_root: Path) -> Registry:
    from ml.registry import Registry

    return Registry(registry_root)


@pytest.fixture(scope="session")
def trained(registry: Registry) -> dict[str, TrainResult]:
    """churn, lead, upsell and win, version 1 of each, promoted (small, trained once)."""
    from ml.training.estimators import MODEL_KINDS
    from ml.training.pipeline import synthetic_training_data, train
    from tests.ml.helpers import SMALL

    return {
        kind: train(kind, synthetic_training_data(kind, SMALL_ROWS, seed=3), registry, hp=SMALL)
        for kind in MODEL_KINDS
    }
