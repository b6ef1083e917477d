"""Validation metrics: discrimination, calibration and model-agnostic feature importance.

Metrics are computed on the held-out validation split from positive-class
probabilities: ROC AUC, PR AUC (average precision), Brier score, log loss, and the
expected calibration error over ten equal-width probability bins, whose reliability
table is kept for the report. Feature importance is permutation importance: the drop in
ROC AUC when one feature's column is shuffled, scored through any prediction function
(the exported ONNX model in practice, so it is cheap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

CALIBRATION_BINS = 10


def calibration_table(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Per probability bin: rows, mean predicted probability, observed positive rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "rows": int(mask.sum()),
                    "predicted": float(p[mask].mean()),
                    "observed": float(y[mask].mean()),
                }
            )
    return table


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Discrimination and calibration metrics of probabilities ``p`` for 0/1 labels ``y``."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    both_classes = 0 < y.sum() < len(y)
    table = calibration_table(y, p)
    ece = sum(row["rows"] * abs(row["predicted"] - row["observed"]) for row in table) / max(
        len(y), 1
    )
    return {
        "rows": len(y),
        "positive_rate": float(y.mean()) if len(y) else 0.0,
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else None,
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "expected_calibration_error": float(ece),
        "calibration": table,
    }


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    seed: int,
    max_rows: int = 3000,
) -> dict[str, float]:
    """Drop in ROC AUC when each feature is shuffled (larger = more important), by feature."""
    rng = np.random.default_rng(seed)
    if len(frame) > max_rows:
        rows = rng.choice(len(frame), max_rows, replace=False)
        frame, y = frame.iloc[rows].reset_index(drop=True), np.asarray(y)[rows]
    if not 0 < np.sum(y) < len(y):
        return dict.fromkeys(frame.columns, 0.0)
    base = roc_auc_score(y, predict(frame))
    importance: dict[str, float] = {}
    for column in frame.columns:
        shuffled = frame.copy()
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
        importance[str(column)] = float(base - roc_auc_score(y, predict(shuffled)))
    return dict(sorted(importance.items(), key=lambda item: -item[1]))
