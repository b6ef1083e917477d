"""The demo's pure parts: the workload plan, usage signals, call counting, the summary."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date

import pytest
import requests

from agents.usage import METRIC_NAMES
from sfe.demo.progress import Budget, Observed, progress_line
from sfe.demo.report import Percentiles, Summary, parse_sf_datetime
from sfe.demo.workload import ApiCallCounter, Plan, hot_lead, usage_signals


def test_plan_scales_with_the_run_and_triples_the_rate_in_thirds() -> None:
    plan = Plan.for_run(120, 20)
    assert (plan.accounts, plan.opportunities, plan.closed_won) == (40, 80, 6)
    assert [plan.lead_rate(t) for t in (0, 39.9, 40, 79.9, 80, 119)] == [10, 10, 20, 20, 40, 40]
    assert plan.expected_leads() == 2800
    assert plan.stage_waves[0] == pytest.approx(12) and plan.stage_waves[-1] == pytest.approx(96)
    assert plan.won_waves == (pytest.approx(36), pytest.approx(72))
    assert plan.churn_at == pytest.approx(72)
    short = Plan.for_run(30, 4)
    assert (short.accounts, short.closed_won) == (12, 2)


def test_usage_signals_use_known_metrics_and_follow_the_trend() -> None:
    body = {"NumberOfEmployees": 200, "Feature_Adoption_Rate__c": 60.0, "Usage_Score__c": 70.0}
    today = date(2026, 11, 26)
    declining = usage_signals(
        "001A", {**body, "Product_Usage_Trend__c": "Declining"}, random.Random(1), today
    )
    stable = usage_signals(
        "001B", {**body, "Product_Usage_Trend__c": "Stable"}, random.Random(1), today
    )
    assert {s.metric for s in declining + stable} <= set(METRIC_NAMES)
    assert all(s.subject == "001A" for s in declining)
    assert all(s.observed_at.date() < today for s in declining + stable)
    dau = [s.value for s in declining if s.metric == "daily_active_users"]
    assert len(dau) == 30 and dau[-1] < dau[0]  # activity falls over the month
    flat = [s.value for s in stable if s.metric == "daily_active_users"]
    assert flat[0] == pytest.approx(flat[-1])


def test_hot_leads_are_senior_and_large() -> None:
    lead = hot_lead(random.Random(2))
    assert int(lead["NumberOfEmployees"]) >= 1500
    assert lead["LeadSource"] in ("Partner Referral", "Web")
    assert 3 <= len(str(lead["Tech_Stack__c"]).split(";")) <= 6


def _response(url: str, status: int, body: str = "") -> requests.Response:
    response = requests.Response()
    response.url, response.status_code, response._content = url, status, body.encode()
    return response


def test_api_call_counter_counts_what_the_org_charges() -> None:
    counter = ApiCallCounter()
    base = "https://127.0.0.1:8443"
    counter(_response(f"{base}/services/data/v62.0/query?q=x", 200))
    counter(_response(f"{base}/services/data/v62.0/composite/sobjects", 400))
    counter(_response(f"{base}/services/data/v62.0/limits", 401))  # not charged
    counter(_response(f"{base}/services/data/v62.0/query", 403, "REQUEST_LIMIT_EXCEEDED"))
    counter(_response(f"{base}/services/oauth2/token", 200))  # a login is no API call
    assert counter.calls == 2


def test_percentiles_interpolate_like_numpy() -> None:
    p = Percentiles.of([float(v) for v in range(1, 101)])
    assert (p.count, p.p50, p.p95, p.p99) == (100, 50.5, pytest.approx(95.05), pytest.approx(99.01))
    assert Percentiles.of([]).text() == "no samples"
    assert Percentiles(3, 0.25, 1.5, 2.0).text() == "p50 250 ms, p95 1.50 s, p99 2.00 s"


def test_salesforce_datetimes_parse_with_milliseconds() -> None:
    moment = parse_sf_datetime("2026-11-26T10:00:01.250+0000")
    assert moment.tzinfo is not None and moment.astimezone(UTC).microsecond == 250_000


def test_summary_prints_every_heading_and_round_trips_as_json() -> None:
    summary = Summary("demo-1", "demo-1.", "/tmp/demo-1", 30.0, 4.0, wall_s=60.0)
    summary.leads_created = 10
    summary.leads_scored = {"Senior AE": 1, "Nurture": 2, "MQL": 7}
    summary.churn_cases, summary.upsell_candidates = 1, 2
    summary.latency_e2e = Percentiles.of([0.5, 0.7, 0.9])
    lines = summary.lines()
    assert lines[1] == "Leads scored      10 of 10 created: Senior AE 1 · Nurture 2 · MQL 7"
    assert "1 churn case opened, 2 upsell candidates" in lines[4]
    assert Summary.from_json(summary.to_json()) == summary


def test_progress_line_shows_bands_throughput_sagas_and_budget() -> None:
    seen = Observed(leads_by_route=Counter({"Nurture": 2, "MQL": 5}))
    seen.onboarding_planned = {"006A", "006B"}
    seen.onboarding_ended = {"006A": "COMPLETED"}
    line = progress_line(12.0, "workload", 9, seen, 150.4, Budget(321, 100_000))
    assert line == (
        "[   12s workload] leads 9 created, 7 scored (Senior AE 0 · Nurture 2 · MQL 5) | "
        "150 events/s | sagas in flight 1 (1 done) | at risk 0 | API 321/100,000"
    )
