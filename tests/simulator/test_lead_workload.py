"""The workload's leads speak the lead model's language, and its scores use all three routes.

No services: a small lead model is trained in-process on the synthetic training data,
and generated leads are scored as the lead agent scores simulator leads (Einstein's
score computed as the simulator does on create, ``CreatedDate`` = now).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.scoring import score_records
from ml.features import FEATURE_SETS
from ml.features.signals import title_seniority
from ml.inference import LoadedModel, load_model
from ml.registry import Registry
from ml.synthetic.accounts import INDUSTRIES
from ml.synthetic.leads import COUNTRIES, SOURCES
from ml.training.pipeline import synthetic_training_data, train
from simulator import einstein
from simulator.load import leads
from simulator.schema import OBJECTS
from simulator.values import validate_input
from tests.ml.helpers import SMALL

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ENGAGEMENT = ("Web_Visits_30d__c", "Email_Opens_30d__c", "Content_Downloads_30d__c")


@pytest.fixture(scope="module")
def lead_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A small lead model trained like the other tests' (2,500 synthetic rows, seed 3)."""
    registry = Registry(Path(tmp_path_factory.mktemp("lead-registry")))
    train("lead", synthetic_training_data("lead", 2500, seed=3), registry, hp=SMALL)
    return load_model(registry, "lead", FEATURE_SETS["lead"])


def _as_created(body: dict[str, Any]) -> dict[str, Any]:
    """The record the simulator stores for ``body``: Einstein's score and CreatedDate added."""
    record = {**body, "CreatedDate": NOW.isoformat().replace("+00:00", "Z")}
    record["Einstein_Lead_Score__c"] = float(einstein.lead_score(record))
    return record


def _enhanced(model: LoadedModel, count: int, seed: int) -> list[float]:
    records = [_as_created(body) for body in leads(random.Random(seed), count)]
    scores = score_records(model, records, NOW.date())
    return [
        0.4 * r["Einstein_Lead_Score__c"] + 0.6 * s.model_score
        for r, s in zip(records, scores, strict=True)
    ]


def test_generated_leads_use_the_training_categories_and_the_simulator_schema() -> None:
    bodies = leads(random.Random(4), 2000)
    assert {b["LeadSource"] for b in bodies} == set(SOURCES)
    assert {b["Industry"] for b in bodies} == set(INDUSTRIES)
    assert {b["Country"] for b in bodies} == set(COUNTRIES)
    bands = Counter(title_seniority(b, NOW.date()) for b in bodies)
    assert set(bands) == {"C-Level", "VP", "Director", "Manager", "Individual"}
    assert 0.04 < bands["C-Level"] / len(bodies) < 0.12
    for name in ENGAGEMENT:
        assert all(isinstance(b[name], int) and b[name] >= 0 for b in bodies)
    # Training means: 5.0 visits, 2.9 opens, 0.73 downloads (ml/synthetic/leads.py).
    assert 4.0 < sum(b["Web_Visits_30d__c"] for b in bodies) / len(bodies) < 6.5
    assert 2.3 < sum(b["Email_Opens_30d__c"] for b in bodies) / len(bodies) < 3.6
    assert 0.5 < sum(b["Content_Downloads_30d__c"] for b in bodies) / len(bodies) < 1.0
    lead = OBJECTS["Lead"]
    for body in bodies:  # every value is accepted by the org (restricted picklists included)
        validate_input(lead, body, creating=True)
    assert leads(random.Random(4), 50) == bodies[:50]


def test_engagement_rises_with_seniority() -> None:
    bodies = leads(random.Random(5), 4000)
    visits: dict[str, list[int]] = {}
    for body in bodies:
        visits.setdefault(str(title_seniority(body, NOW.date())), []).append(
            body["Web_Visits_30d__c"]
        )
    mean = {band: sum(v) / len(v) for band, v in visits.items()}
    assert mean["C-Level"] > mean["Manager"] > mean["Individual"]


def test_generated_leads_reach_every_route(lead_model: LoadedModel) -> None:
    """Senior AE (> 80), nurture (> 50) and MQL each take a real share of the leads.

    The model's score is its percentile among validation leads, so it spreads over
    0-100 like the simulated Einstein score it is blended with.
    """
    enhanced = _enhanced(lead_model, 2000, seed=7)
    senior = sum(e > 80 for e in enhanced) / len(enhanced)
    nurture = sum(50 < e <= 80 for e in enhanced) / len(enhanced)
    mql = sum(e <= 50 for e in enhanced) / len(enhanced)
    assert 0.03 <= senior <= 0.30, senior
    assert 0.20 <= nurture <= 0.75, nurture
    assert 0.10 <= mql <= 0.75, mql
