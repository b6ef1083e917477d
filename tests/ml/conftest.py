"""Fixtures of the ML tests: each model trained once per session on small synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.registry import Registry
from ml.training.estimators import MODEL_KINDS
from ml.training.pipeline import TrainResult, synthetic_training_data, train
from tests.ml.helpers import SMALL

SMALL_ROWS = 2500


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def registry(registry_root: Path) -> Registry:
    return Registry(registry_root)


@pytest.fixture(scope="session")
def trained(registry: Registry) -> dict[str, TrainResult]:
    """churn, lead, upsell and win, version 1 of each, promoted."""
    return {
        kind: train(kind, synthetic_training_data(kind, SMALL_ROWS, seed=3), registry, hp=SMALL)
        for kind in MODEL_KINDS
    }
