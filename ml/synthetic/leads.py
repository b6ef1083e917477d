"""Synthetic leads: firmographics, engagement and whether each converted.

Each lead has a hidden *intent* ``i ~ N(0, 1)``. Distributions:

* ``NumberOfEmployees``: log-normal (median e^5 = 148, sigma 1.5), 1 to 500,000;
  ``AnnualRevenue = employees * 150,000 * LogNormal(0, 0.5)`` (8 % missing).
* ``Estimated_Budget__c = revenue * 0.002 * LogNormal(0, 0.6)`` (20 % missing).
* ``Tech_Stack__c``: ``Poisson(3)`` technologies (``;``-separated);
  ``Decision_Makers__c``: ``Poisson(1.5)`` names, one per line.
* ``Web_Visits_30d__c ~ Poisson(e^(1.5 + 0.5 i))``, ``Email_Opens_30d__c ~ Poisson(e^(1 + 0.4 i))``,
  ``Content_Downloads_30d__c ~ Poisson(e^(-0.5 + 0.6 i))``; ``CreatedDate``: 0-120 days ago.
* ``LeadSource``: Web 35 %, Event 15 %, Cold Call 15 %, Partner 13 %, Referral 12 %, Advertisement 10 %;
  ``Title``: C-Level 8 %, VP 12 %, Director 20 %, Manager 30 %, individual contributors 30 %.
* ``Einstein_Score = 50 + 15 i + N(0, 10)``, clipped to 0-100 (the platform's base score).

``Converted`` (about 20 %) rises with intent, company size, seniority, referral and
partner sources and tech-stack breadth, falls for cold calls and with lead age.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml.synthetic.accounts import INDUSTRIES

SOURCES = ("Web", "Event", "Cold Call", "Partner", "Referral", "Advertisement")
_SOURCE_P = (0.35, 0.15, 0.15, 0.13, 0.12, 0.10)
_SOURCE_EFFECT = np.array([0.0, 0.2, -0.6, 0.5, 0.8, -0.2])
COUNTRIES = ("United States", "United Kingdom", "Germany", "France", "Canada", "Australia", "India")
_COUNTRY_P = (0.45, 0.12, 0.10, 0.08, 0.08, 0.07, 0.10)
_TITLES = (
    ("Chief Technology Officer", "CEO", "Chief Information Officer"),
    ("VP of Engineering", "Vice President, Sales", "SVP Operations"),
    ("Director of IT", "Head of Data", "Engineering Director"),
    ("IT Manager", "Product Manager", "Team Lead"),
    ("Software Engineer", "Analyst", "Consultant"),
)
_TITLE_P = (0.08, 0.12, 0.20, 0.30, 0.30)
_SENIORITY_EFFECT = np.array([0.7, 0.5, 0.3, 0.0, -0.3])
TECHNOLOGIES = (
    "AWS",
    "Azure",
    "GCP",
    "Snowflake",
    "Kafka",
    "Kubernetes",
    "Salesforce",
    "SAP",
    "Databricks",
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def generate_leads(rows: int, seed: int, as_of: date) -> pd.DataFrame:
    """``rows`` leads as Salesforce-shaped records with a ``Converted`` outcome."""
    rng = np.random.default_rng(seed)
    intent = rng.normal(size=rows)
    employees = np.clip(np.round(rng.lognormal(5, 1.5, rows)), 1, 500_000)
    revenue = np.round(employees * 150_000 * rng.lognormal(0, 0.5, rows), -3)
    budget = np.round(revenue * 0.002 * rng.lognormal(0, 0.6, rows), -2)
    stack_size = np.minimum(rng.poisson(3, rows), len(TECHNOLOGIES))
    makers = rng.poisson(1.5, rows)
    visits = rng.poisson(np.exp(1.5 + 0.5 * intent))
    opens = rng.poisson(np.exp(1.0 + 0.4 * intent))
    downloads = rng.poisson(np.exp(-0.5 + 0.6 * intent))
    age = rng.integers(0, 121, rows)
    source = rng.choice(len(SOURCES), rows, p=_SOURCE_P)
    band = rng.choice(len(_TITLES), rows, p=_TITLE_P)
    einstein = np.round(np.clip(50 + 15 * intent + rng.normal(0, 10, rows), 0, 100))

    logit = (
        -2.4
        + 0.8 * intent
        + 0.25 * np.log10(employees)
        + _SENIORITY_EFFECT[band]
        + _SOURCE_EFFECT[source]
        + 0.12 * stack_size
        - 0.006 * age
        + rng.normal(0, 0.8, rows)
    )
    converted = rng.random(rows) < _sigmoid(logit)
    return pd.DataFrame(
        {
            "Id": [f"00QSYN{seed % 1000:03d}{i:09d}" for i in range(rows)],
            "NumberOfEmployees": employees,
            "AnnualRevenue": np.where(rng.random(rows) < 0.08, np.nan, revenue),
            "Estimated_Budget__c": np.where(rng.random(rows) < 0.2, np.nan, budget),
            "Tech_Stack__c": [
                ";".join(rng.choice(TECHNOLOGIES, k, replace=False)) for k in stack_size
            ],
            "Decision_Makers__c": ["\n".join(f"Contact {j + 1}" for j in range(k)) for k in makers],
            "Web_Visits_30d__c": visits,
            "Email_Opens_30d__c": opens,
            "Content_Downloads_30d__c": downloads,
            "CreatedDate": [
                (as_of - timedelta(days=int(d))).isoformat() + "T09:00:00Z" for d in age
            ],
            "LeadSource": np.array(SOURCES)[source],
            "Industry": rng.choice(INDUSTRIES, rows),
            "Title": [_TITLES[b][rng.integers(0, 3)] for b in band],
            "Country": rng.choice(COUNTRIES, rows, p=_COUNTRY_P),
            "Einstein_Score": einstein,
            "Converted": converted,
        }
    )
