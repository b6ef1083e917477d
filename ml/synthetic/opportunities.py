"""Synthetic open opportunities with stage histories, and whether each was won.

Each opportunity has a hidden *deal quality* ``q ~ N(0, 1)``. Distributions:

* ``Amount``: log-normal around 40,000 (sigma 1); ``Type``: New Business 65 %, Existing 35 %.
* current stage (index 0-5 of Prospecting ... Negotiation/Review) with probabilities
  .15/.20/.20/.15/.15/.15; ``Stage_History`` walks up to it, each step a regression
  (back one stage, then forward again) with probability ``sigmoid(-2 - q)``, steps
  ``Exponential(10 days)`` apart; time in the current stage ``Exponential(12 e^(-0.3 q))`` days.
* ``Close_Date_Pushes__c ~ Poisson(0.6 e^(-0.5 q))``; ``CloseDate`` = as-of + U(-10, 120) days
  + 15 days per push; ``Competitor_Count__c ~ Poisson(1.2)``;
  ``Discount_Percent__c = N(8, 6)`` clipped to 0-40 (6 % missing);
  ``Activities_30d__c ~ Poisson(e^(2 + 0.4 q))``; ``Stakeholders_Engaged__c = 1 + Poisson(1.5 + [q > 0])``.

``Won`` (about 35 %) rises with quality, later stages, existing business, activity and
stakeholders; falls with regressions, close-date pushes and competitors.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml.features.signals import OPPORTUNITY_STAGES
from ml.synthetic.accounts import INDUSTRIES
from ml.synthetic.leads import SOURCES

_STAGE_P = (0.15, 0.20, 0.20, 0.15, 0.15, 0.15)
TYPES = ("New Business", "Existing Business")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _history(
    rng: np.random.Generator, stage: int, regress_p: float, entered: date
) -> tuple[list[dict[str, str]], date, int]:
    """Stage entries oldest first, ending with entry into ``stage`` on ``entered``."""
    steps: list[int] = []
    regressions = 0
    for target in range(stage + 1):
        steps.append(target)
        if 0 < target < stage and rng.random() < regress_p:
            steps.extend([target - 1, target])
            regressions += 1
    gaps = rng.exponential(10, len(steps)).astype(int) + 1
    day = entered
    entries: list[dict[str, str]] = []
    for index in range(len(steps) - 1, -1, -1):
        entries.append(
            {"StageName": OPPORTUNITY_STAGES[steps[index]], "CreatedDate": day.isoformat()}
        )
        day -= timedelta(days=int(gaps[index]))
    entries.reverse()
    return entries, day, regressions


def generate_opportunities(rows: int, seed: int, as_of: date) -> pd.DataFrame:
    """``rows`` open opportunities as Salesforce-shaped records with a ``Won`` outcome."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=rows)
    stage = rng.choice(len(OPPORTUNITY_STAGES), rows, p=_STAGE_P)
    in_stage = rng.exponential(12 * np.exp(-0.3 * q)).astype(int)
    pushes = rng.poisson(0.6 * np.exp(-0.5 * q))
    close_in = rng.integers(-10, 121, rows) + 15 * pushes
    competitors = rng.poisson(1.2, rows)
    discount = np.clip(rng.normal(8, 6, rows), 0, 40)
    activities = rng.poisson(np.exp(2 + 0.4 * q))
    stakeholders = 1 + rng.poisson(1.5 + (q > 0))
    kind = rng.choice(2, rows, p=(0.65, 0.35))

    histories, created, regressions = [], [], np.zeros(rows)
    for i in range(rows):
        entries, start, count = _history(
            rng,
            int(stage[i]),
            float(_sigmoid(np.array(-2 - q[i]))),
            as_of - timedelta(days=int(in_stage[i])),
        )
        histories.append(entries)
        created.append(start.isoformat())
        regressions[i] = count
    logit = (
        -1.6
        + 0.7 * q
        + 0.3 * stage
        - 0.5 * regressions
        - 0.3 * pushes
        - 0.2 * competitors
        + 0.02 * discount
        + 0.6 * kind
        + 0.1 * (stakeholders - 2)
        + rng.normal(0, 0.8, rows)
    )
    won = rng.random(rows) < _sigmoid(logit)
    return pd.DataFrame(
        {
            "Id": [f"006SYN{seed % 1000:03d}{i:09d}" for i in range(rows)],
            "Amount": np.round(rng.lognormal(np.log(40_000), 1.0, rows), 2),
            "StageName": np.array(OPPORTUNITY_STAGES)[stage],
            "Stage_History": histories,
            "Close_Date_Pushes__c": pushes,
            "CloseDate": [(as_of + timedelta(days=int(d))).isoformat() for d in close_in],
            "CreatedDate": created,
            "Competitor_Count__c": competitors,
            "Discount_Percent__c": np.where(rng.random(rows) < 0.06, np.nan, np.round(discount, 1)),
            "Activities_30d__c": activities,
            "Stakeholders_Engaged__c": stakeholders,
            "LeadSource": rng.choice(SOURCES, rows),
            "Type": np.array(TYPES)[kind],
            "Industry": rng.choice(INDUSTRIES, rows),
            "Won": won,
        }
    )
