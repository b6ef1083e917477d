"""Synthetic customer accounts: 30 days of usage, tickets, payments, NPS, renewals, churn, upsell.

Each account has a hidden *health* ``h ~ N(0, 1)`` and a hidden *growth* ``g ~ N(0, 1)``
that drive what is observed; outcomes are Bernoulli draws from logistic functions of
the observed signals plus hidden terms and noise, so no model can be perfect.

Distributions (per account):

* ``Plan_Tier__c``: Starter 50 %, Growth 35 %, Enterprise 15 %; ``Licensed_Seats__c``
  log-normal around 15 / 80 / 600 seats (sigma 0.5).
* seat utilisation ``u = 1.15 * sigmoid(0.9 + 0.9 h + N(0, 0.5))``;
  ``Monthly_Active_Users__c = round(seats * u)``; 0.3 % of rows carry a bad negative count.
* ``Daily_Active_Users``: 30 Poisson counts around ``0.35 * MAU``, weekends at half, with a
  linear trend ``0.25 h + N(-0.05, 0.15)`` across the month.
* ``Feature_Adoption_Rate__c = 100 * sigmoid(0.6 h + N(0, 0.6))`` (3 % missing);
  ``Support_Ticket_Count_30d__c ~ Poisson(0.8 seats^0.3 e^(-0.4 h))``.
* ``Payments``: four monthly invoices, each late with probability ``sigmoid(-2.5 - 0.7 h)``.
* ``Contract_Renewal_Date__c``: as-of + U(-30, 365) days; ``Customer_Since__c``: 1-96 months ago.
* ``Usage_Score__c = 50 + 18 h + N(0, 10)``; ``NPS_Score__c = 20 + 35 h + N(0, 25)`` (5 % missing);
  ``Engagement_Level__c`` from the usage score, 10 % of labels random.
* ``Competitor_Mentions_30d__c ~ Poisson(0.5 e^(-0.6 h))``.
* upsell signals: ``Api_Calls_30d__c`` log-normal in MAU, ``Storage_Utilization__c ~ Beta``,
  ``Products_Owned__c`` 1-5, ``Employee_Growth_12m__c = 0.08 + 0.12 g + N(0, 0.05)``.

Outcomes: ``Churned`` (about 15 %) rises with low health, falling usage, late payments,
near renewals, competitor mentions and the Starter tier; ``Upsold`` (about 20 %) rises
with seat pressure, usage growth, headcount growth and storage pressure.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

TIERS = ("Starter", "Growth", "Enterprise")
INDUSTRIES = (
    "Technology",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Media",
    "Education",
    "Government",
)
_INDUSTRY_P = (0.25, 0.15, 0.12, 0.12, 0.12, 0.08, 0.08, 0.08)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def generate_accounts(rows: int, seed: int, as_of: date) -> pd.DataFrame:
    """``rows`` accounts as Salesforce-shaped records with ``Churned`` and ``Upsold`` outcomes."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=rows)
    g = rng.normal(size=rows)
    tier = rng.choice(3, size=rows, p=(0.5, 0.35, 0.15))
    seats = np.maximum(1, np.round(np.array([15, 80, 600])[tier] * rng.lognormal(0, 0.5, rows)))
    util = 1.15 * _sigmoid(0.9 + 0.9 * h + rng.normal(0, 0.5, rows))
    mau = np.round(seats * util)
    slope = 0.25 * h + rng.normal(-0.05, 0.15, rows)
    days = np.arange(30)
    shape = np.clip(1 + np.outer(slope, (days - 15) / 15), 0.05, None)
    weekend = np.where(days % 7 >= 5, 0.5, 1.0)
    dau = rng.poisson(0.35 * mau[:, None] * shape * weekend)
    adoption = 100 * _sigmoid(0.6 * h + rng.normal(0, 0.6, rows))
    tickets = rng.poisson(0.8 * seats**0.3 * np.exp(-0.4 * h))
    late = rng.random((rows, 4)) < _sigmoid(-2.5 - 0.7 * h)[:, None]
    renewal_days = rng.integers(-30, 366, rows)
    tenure_days = rng.integers(30, 96 * 30, rows)
    usage_score = np.clip(50 + 18 * h + rng.normal(0, 10, rows), 0, 100)
    nps = np.round(np.clip(20 + 35 * h + rng.normal(0, 25, rows), -100, 100))
    level = np.where(usage_score > 65, "High", np.where(usage_score > 40, "Medium", "Low"))
    level = np.where(rng.random(rows) < 0.1, rng.choice(["High", "Medium", "Low"], rows), level)
    mentions = rng.poisson(0.5 * np.exp(-0.6 * h))
    acv = np.round(seats * np.array([300, 600, 1000])[tier] * rng.lognormal(0, 0.2, rows), 2)
    api_calls = np.round(mau * rng.lognormal(6 + 0.3 * g, 0.8))
    storage = rng.beta(2 + 2 * _sigmoid(g), 3, rows) * 1.3
    products = rng.integers(1, 6, rows)
    growth = 0.08 + 0.12 * g + rng.normal(0, 0.05, rows)

    late_count = late[:, 1:].sum(axis=1)
    renewal_near = np.clip(90 - renewal_days, 0, 120) / 30
    trend_obs = dau[:, 15:].mean(axis=1) / np.maximum(dau[:, :15].mean(axis=1), 1e-9) - 1
    churn_logit = (
        -2.3
        - 0.9 * h
        - 1.2 * np.clip(trend_obs, -1, 1)
        + 0.45 * late_count
        + 0.25 * renewal_near
        + 0.3 * mentions
        + np.array([0.4, 0.0, -0.4])[tier]
        + rng.normal(0, 0.7, rows)
    )
    upsell_logit = (
        -2.2
        + 2.2 * (util - 0.85)
        + 1.2 * np.clip(trend_obs, -1, 1)
        + 4.0 * (growth - 0.08)
        + 1.0 * (storage > 0.9)
        + np.array([0.3, 0.2, -0.6])[tier]
        + rng.normal(0, 0.7, rows)
    )
    churned = rng.random(rows) < _sigmoid(churn_logit)
    upsold = rng.random(rows) < _sigmoid(upsell_logit)

    bad_mau = rng.random(rows) < 0.003
    adoption_missing = rng.random(rows) < 0.03
    nps_missing = rng.random(rows) < 0.05
    records = pd.DataFrame(
        {
            "Id": [f"001SYN{seed % 1000:03d}{i:09d}" for i in range(rows)],
            "Plan_Tier__c": np.array(TIERS)[tier],
            "Industry": rng.choice(INDUSTRIES, rows, p=_INDUSTRY_P),
            "Licensed_Seats__c": seats,
            "Monthly_Active_Users__c": np.where(bad_mau, -mau - 1, mau),
            "Daily_Active_Users": list(dau),
            "Feature_Adoption_Rate__c": np.where(adoption_missing, np.nan, np.round(adoption, 1)),
            "Support_Ticket_Count_30d__c": tickets,
            "Payments": [_payments(as_of, row) for row in late],
            "Contract_Renewal_Date__c": [
                (as_of + timedelta(days=int(d))).isoformat() for d in renewal_days
            ],
            "Customer_Since__c": [
                (as_of - timedelta(days=int(d))).isoformat() for d in tenure_days
            ],
            "Usage_Score__c": np.round(usage_score, 1),
            "NPS_Score__c": np.where(nps_missing, np.nan, nps),
            "Engagement_Level__c": level,
            "Competitor_Mentions_30d__c": mentions,
            "Annual_Contract_Value__c": acv,
            "Api_Calls_30d__c": api_calls,
            "Storage_Utilization__c": np.round(storage, 3),
            "Products_Owned__c": products,
            "Employee_Growth_12m__c": np.round(growth, 3),
            "Churned": churned,
            "Upsold": upsold,
        }
    )
    return records


def _payments(as_of: date, late: np.ndarray) -> list[dict[str, str | None]]:
    """Four monthly invoices, newest last; a late one was paid 5-40 days after its due date."""
    invoices: list[dict[str, str | None]] = []
    for month, is_late in enumerate(late):
        due = as_of - timedelta(days=30 * (3 - month) + 5)
        paid = due + timedelta(days=(5 + 7 * month) if is_late else -2)
        invoices.append(
            {"due": due.isoformat(), "paid": None if paid > as_of else paid.isoformat()}
        )
    return invoices
