"""Population stability index (PSI) of each feature against its training distribution.

At training time :func:`reference` summarises every feature of the training frame:
numeric features by decile edges and the share of rows in each bin (plus the missing
share), categorical ones by the share of each category (the rest pooled as "other").
The summary is stored in the model's manifest. :func:`psi` compares a scoring batch
against it: ``PSI = sum((actual - expected) * ln(actual / expected))`` over bins, with
shares floored at 1e-4. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift.

A served model watches its own inputs with a :class:`DriftWindow`: every scored batch's
cleaned columns are kept (the newest ``capacity`` rows), and :meth:`DriftWindow.psi`
gives the same index over them, which the workers publish as ``sfe_feature_psi``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml.features.spec import FeatureSet, FeatureType

_FLOOR = 1e-4
_MAX_CATEGORIES = 30
MISSING_BIN = "missing"
OTHER_BIN = "other"


def _numeric_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    finite = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    total = max(len(values), 1)
    return [*(counts / total).tolist(), float(np.isnan(values).sum() / total)]


def _category_shares(values: np.ndarray, categories: list[str]) -> list[float]:
    total = max(len(values), 1)
    found, counts = np.unique(values.astype(str), return_counts=True)
    count_of = dict(zip(found.tolist(), counts.tolist(), strict=True))
    shares = [float(count_of.get(c, 0) / total) for c in categories]
    return [*shares, max(0.0, 1.0 - sum(shares))]


def reference(features: FeatureSet, frame: pd.DataFrame) -> dict[str, Any]:
    """The training distribution of every feature, as stored in the manifest."""
    summary: dict[str, Any] = {}
    for feature in features.features:
        column = frame[feature.name]
        if feature.type is FeatureType.NUMERIC:
            values = column.to_numpy(dtype=np.float64)
            finite = values[~np.isnan(values)]
            edges = (
                sorted(set(np.quantile(finite, np.linspace(0.1, 0.9, 9)).tolist()))
                if len(finite)
                else []
            )
            summary[feature.name] = {"edges": edges, "shares": _numeric_shares(values, edges)}
        else:
            top = column.value_counts().index[:_MAX_CATEGORIES].astype(str).tolist()
            shares = _category_shares(column.to_numpy(dtype=object), top)
            summary[feature.name] = {"categories": top, "shares": shares}
    return summary


def _index(expected: list[float], actual: list[float]) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(features: FeatureSet, summary: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of each feature of ``frame`` (a cleaned feature frame) against ``summary``."""
    columns = {feature.name: frame[feature.name].to_numpy() for feature in features.features}
    return psi_of_columns(features, summary, columns)


def psi_of_columns(
    features: FeatureSet, summary: dict[str, Any], columns: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """PSI of each feature of cleaned ``columns`` (one array per feature) against ``summary``."""
    result: dict[str, float] = {}
    for feature in features.features:
        entry = summary[feature.name]
        column = columns[feature.name]
        if feature.type is FeatureType.NUMERIC:
            actual = _numeric_shares(column.astype(np.float64), entry["edges"])
        else:
            actual = _category_shares(column, entry["categories"])
        result[feature.name] = _index(entry["shares"], actual)
    return result


class DriftWindow:
    """The newest scored inputs of one model, and their PSI against its training data.

    :meth:`observe` is cheap (it keeps references to the batch's arrays); the index is
    computed only when :meth:`psi` is asked, over at most ``capacity`` rows. Batches
    are kept whole, so the window holds between ``capacity`` and ``capacity`` plus one
    batch of rows. Safe to share between threads.
    """

    def __init__(
        self,
        features: FeatureSet,
        summary: dict[str, Any],
        capacity: int = 10_000,
        min_rows: int = 200,
    ) -> None:
        """Watch inputs of ``features`` against the manifest's ``summary``."""
        self.features = features
        self.summary = summary
        self.capacity = capacity
        self.min_rows = min_rows
        self._batches: deque[tuple[Mapping[str, np.ndarray], int]] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return self._rows

    def observe(self, columns: Mapping[str, np.ndarray], rows: int) -> None:
        """Add a scored batch's cleaned columns; the oldest batches leave the window."""
        if rows <= 0 or not self.summary:
            return
        with self._lock:
            self._batches.append((columns, rows))
            self._rows += rows
            while self._batches and self._rows - self._batches[0][1] >= self.capacity:
                _, dropped = self._batches.popleft()
                self._rows -= dropped

    def psi(self) -> dict[str, float] | None:
        """PSI per feature over the window, or None below ``min_rows`` (too noisy)."""
        with self._lock:
            if self._rows < self.min_rows:
                return None
            batches = list(self._batches)
        columns = {
            feature.name: np.concatenate([batch[feature.name] for batch, _ in batches])
            for feature in self.features.features
        }
        return psi_of_columns(self.features, self.summary, columns)
