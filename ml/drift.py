"""Population stability index (PSI) of each feature against its training distribution.

At training time :func:`reference` summarises every feature of the training frame:
numeric features by decile edges and the share of rows in each bin (plus the missing
share), categorical ones by the share of each category (the rest pooled as "other").
The summary is stored in the model's manifest. :func:`psi` compares a scoring batch
against it: ``PSI = sum((actual - expected) * ln(actual / expected))`` over bins, with
shares floored at 1e-4. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift.
"""

from __future__ import annotations

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


def _category_shares(values: pd.Series, categories: list[str]) -> list[float]:
    total = max(len(values), 1)
    counts = values.value_counts()
    shares = [float(counts.get(c, 0) / total) for c in categories]
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
            summary[feature.name] = {"categories": top, "shares": _category_shares(column, top)}
    return summary


def _index(expected: list[float], actual: list[float]) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(features: FeatureSet, summary: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of each feature of ``frame`` (a cleaned feature frame) against ``summary``."""
    result: dict[str, float] = {}
    for feature in features.features:
        entry = summary[feature.name]
        column = frame[feature.name]
        if feature.type is FeatureType.NUMERIC:
            actual = _numeric_shares(column.to_numpy(dtype=np.float64), entry["edges"])
        else:
            actual = _category_shares(column.astype(str), entry["categories"])
        result[feature.name] = _index(entry["shares"], actual)
    return result
