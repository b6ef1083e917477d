"""Helpers shared by the ML tests: small training settings and a CSV export to train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml.training.estimators import Hyperparameters

SMALL = Hyperparameters(trees=40, forest_trees=30, epochs=8, seed=11)
"""Learners small enough for tests; the planted signal is still learned."""


def write_churn_export(path: Path, rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """A churn export as a CRM report would give it: ids, free text, a constant, Yes/No target."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], rows)
    risk = (
        -0.05 * tenure
        + np.where(contract == "Month-to-month", 1.5, -1.0)
        + rng.normal(0, 0.7, rows)
    )
    table = pd.DataFrame(
        {
            "customerID": [f"{i:05d}-XYZ" for i in range(rows)],
            "RowNumber": range(1, rows + 1),
            "Surname": [f"Name{i}" for i in range(rows)],
            "Tenure (months)": tenure,
            "TotalCharges": [" " if t == 0 else f"{t * 50.5:.2f}" for t in tenure],
            "Contract": contract,
            "Region": "EMEA",
            "Churn": np.where(risk > 0, "Yes", "No"),
        }
    )
    table.to_csv(path, index=False)
    return table
