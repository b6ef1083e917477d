"""Synthetic CRM histories for training and tests, deterministic by seed.

:func:`synthetic_dataset` returns Salesforce-shaped records (fields, usage series,
payments, stage histories) with the outcome column each model learns; the features are
then computed from them by the same code that serves, :meth:`FeatureSet.frame`. The
distributions and the planted signal are documented in each generator's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pandas as pd

from ml.synthetic.accounts import generate_accounts
from ml.synthetic.leads import generate_leads
from ml.synthetic.opportunities import generate_opportunities

AS_OF = date(2026, 1, 1)
"""The as-of date of every synthetic history (fixed, so a seed always gives the same data)."""

_GENERATORS: dict[str, tuple[Callable[[int, int, date], pd.DataFrame], str]] = {
    "churn": (generate_accounts, "Churned"),
    "upsell": (generate_accounts, "Upsold"),
    "lead": (generate_leads, "Converted"),
    "win": (generate_opportunities, "Won"),
}


@dataclass(frozen=True)
class SyntheticDataset:
    """Records of one model's domain, the outcome column, and the date they describe."""

    records: pd.DataFrame
    target: str
    as_of: date
    seed: int


def synthetic_dataset(model: str, rows: int, seed: int = 7) -> SyntheticDataset:
    """``rows`` synthetic records for ``model`` (churn, upsell, lead or win)."""
    try:
        generate, target = _GENERATORS[model]
    except KeyError:
        raise ValueError(f"no synthetic data for model {model!r}") from None
    return SyntheticDataset(generate(rows, seed, AS_OF), target, AS_OF, seed)


__all__ = [
    "AS_OF",
    "SyntheticDataset",
    "generate_accounts",
    "generate_leads",
    "generate_opportunities",
    "synthetic_dataset",
]
