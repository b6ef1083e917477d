"""`sfe demo` end to end: its summary agrees with what the org and PostgreSQL hold afterwards.

A short demo (30 s of workload at a low rate) runs against the real stack with the
session's small models. Afterwards its org is reopened from the SQLite file it left
(a new `sfe sim serve` on it) and queried independently, PostgreSQL is read directly,
every process the demo started must be gone, and the HTML report must hold its plots.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simple_salesforce import Salesforce
from sqlalchemy import create_engine, text

from schema_registry.ids import derived_event_id
from sfe.demo import DemoOptions, DemoResult, run_demo
from sfe.demo.report import Summary, parse_sf_datetime
from sfe.settings import Settings
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect
from tests.kafka_helpers import delete_topics_with_prefix
from tests.ports import free_port

pytestmark = pytest.mark.integration


@dataclass
class Ran:
    """A finished demo and what it printed."""

    result: DemoResult
    lines: list[str]

    @property
    def folder(self) -> Path:
        return self.result.folder

    @property
    def summary(self) -> Summary | None:
        return self.result.summary


@pytest.fixture(scope="module")
def demo(stack: Settings, registry_root: Path, trained: dict[str, Any]) -> Iterator[Ran]:
    """One short demo, run in this process with the session's models."""
    settings = stack.model_copy(update={"model_dir": registry_root})
    lines: list[str] = []
    result = run_demo(
        settings,
        DemoOptions(duration=30, rate=4, drain_timeout=150),
        echo=lines.append,
    )
    try:
        yield Ran(result, lines)
    finally:
        if result.summary is not None:
            delete_topics_with_prefix(stack, result.summary.topic_prefix)
        shutil.rmtree(result.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def org(demo: Ran) -> Iterator[Salesforce]:
    """The demo's org, reopened from its SQLite file by a new simulator."""
    port = free_port()
    env = dict(
        os.environ,
        SFE_STATE_DIR=str(demo.folder / "state"),
        SFE_SIM_PORT=str(port),
        SFE_SIM_SQLITE_FILE=str(demo.folder / "org.sqlite3"),
        SFE_LOG_LEVEL="WARNING",
    )
    simulator = subprocess.Popen(
        [sys.executable, "-m", "sfe.cli", "sim", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        ca_file = ""
        for _ in range(20):
            line = simulator.stdout.readline()
            if line.startswith("CA certificate:"):
                ca_file = line.split(":", 1)[1].strip()
                break
        assert ca_file, "the reopened simulator did not start"
        config = SalesforceAuthConfig(
            login_url=f"https://127.0.0.1:{port}",
            client_id="sfe-local-client",
            client_secret="sfe-local-secret",
            username="integration@sfe.local",
            password="sfe-local-password",
            ca_bundle=Path(ca_file),
            call_options_client="demo-test",
        )
        yield connect(config)
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(30)


def records(sf: Salesforce, soql: str) -> list[dict[str, Any]]:
    return list(sf.query_all(soql)["records"])


def test_demo_runs_to_its_summary_and_report(demo: Ran) -> None:
    lines = demo.lines
    assert demo.result.exit_code == 0, "\n".join(lines)
    summary = demo.summary
    assert summary is not None and summary.drained, summary and summary.pending
    output = "\n".join(lines)
    for heading in ("Leads scored", "Opportunities", "Onboarding", "Churn and upsell",
                    "Salesforce API", "Latency", "Throughput", "PostgreSQL", "Report"):  # fmt: skip
        assert heading in output
    assert "metrics endpoints" in output and "/metrics" in output
    # summary.json holds exactly what was printed.
    assert Summary.from_json((demo.folder / "summary.json").read_text()) == summary
    assert summary.leads_created > 100 and summary.leads_scored_total == summary.leads_created
    assert summary.closed_won >= 2 and summary.accounts_onboarded == summary.closed_won
    assert summary.accounts_assessed == summary.accounts_created
    assert summary.api_calls_pipeline > 0 and summary.api_calls_per_1000_updates is not None
    assert summary.api_calls_sink is not None
    assert 0 < summary.api_calls_sink <= summary.api_calls_pipeline
    assert summary.latency_e2e.count == summary.leads_created
    assert summary.latency_decision.count == summary.leads_created
    report = Path(summary.report_path).read_text()
    assert report.count("data:image/png;base64,") == 3
    for title in ("Latency distribution", "Score distributions", "Throughput over time"):
        assert title in report


def test_no_process_of_the_demo_is_left(demo: Ran) -> None:
    summary = demo.summary
    assert summary is not None
    assert set(summary.pids) == {"simulator", "ingest", "worker", "ecosystem", "sink", "projection"}
    for name, pid in summary.pids.items():
        cmdline = Path(f"/proc/{pid}/cmdline")
        alive = cmdline.exists() and b"sfe.cli" in cmdline.read_bytes()
        assert not alive, f"{name} (PID {pid}) still runs"


def test_summary_agrees_with_the_org(demo: Ran, org: Salesforce) -> None:
    summary = demo.summary
    assert summary is not None
    leads = records(
        org,
        "SELECT Id, AI_Lead_Route__c, AI_Enhanced_Score__c, CreatedDate, LastModifiedDate FROM Lead",
    )
    assert len(leads) == summary.leads_created
    scored = [lead for lead in leads if lead["AI_Enhanced_Score__c"] is not None]
    routes = Counter(str(lead["AI_Lead_Route__c"]) for lead in scored)
    assert {k: v for k, v in summary.leads_scored.items() if v} == dict(routes)
    latencies = [
        (
            parse_sf_datetime(lead["LastModifiedDate"]) - parse_sf_datetime(lead["CreatedDate"])
        ).total_seconds()
        for lead in scored
    ]
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    assert summary.latency_e2e.p50 == pytest.approx(p50)
    assert summary.latency_e2e.p95 == pytest.approx(p95)
    assert summary.latency_e2e.p99 == pytest.approx(p99)

    opportunities = records(
        org, "SELECT Id, AccountId, StageName, Provisioning_Status__c FROM Opportunity"
    )
    assert len(opportunities) == summary.opportunities_created
    won = [o for o in opportunities if o["StageName"] == "Closed Won"]
    assert len(won) == summary.closed_won
    complete = [o for o in won if o["Provisioning_Status__c"] == "Complete"]
    assert len(complete) == summary.onboarding_completed
    assert len({o["AccountId"] for o in complete}) == summary.accounts_onboarded

    tasks = records(org, "SELECT WhatId, Subject FROM Task")
    at_risk = {t["WhatId"] for t in tasks if t["Subject"] == "At-risk deal: talking points"}
    assert len(at_risk) == summary.opportunities_at_risk
    upsell = [t for t in tasks if str(t["Subject"]).startswith("Expansion opportunity:")]
    assert len(upsell) == summary.upsell_candidates

    accounts = records(org, "SELECT Id, Churn_Risk__c FROM Account")
    assert len(accounts) == summary.accounts_created
    assert sum(1 for a in accounts if a["Churn_Risk__c"] is not None) == summary.accounts_assessed
    cases = records(org, "SELECT Id, AccountId, Priority FROM Case")
    assert len(cases) == summary.churn_cases
    assert {c["AccountId"] for c in cases} <= {a["Id"] for a in accounts}
    assert all(c["Priority"] == "High" for c in cases)


def test_summary_agrees_with_postgres(demo: Ran, org: Salesforce, stack: Settings) -> None:
    summary = demo.summary
    assert summary is not None
    lead_ids = [r["Id"] for r in records(org, "SELECT Id FROM Lead")]
    opportunity_ids = [r["Id"] for r in records(org, "SELECT Id FROM Opportunity")]
    account_ids = [r["Id"] for r in records(org, "SELECT Id FROM Account")]
    engine = create_engine(stack.sqlalchemy_url())
    try:
        with engine.connect() as db:

            def scalar(sql: str, **params: Any) -> int:
                return int(db.execute(text(sql), params).scalar_one())

            assert summary.leads_scored_total == scalar(
                "SELECT count(*) FROM ml_predictions WHERE prediction_type = 'lead_score' "
                "AND account_id = ANY(:ids)",
                ids=lead_ids,
            )
            assert summary.leads_scored_total == scalar(
                "SELECT count(*) FROM workflow_executions WHERE workflow_name = "
                "'lead_qualification' AND status = 'COMPLETED' AND record_id = ANY(:ids)",
                ids=lead_ids,
            )
            assert summary.onboarding_completed == scalar(
                "SELECT count(*) FROM workflow_executions WHERE workflow_name = 'onboarding' "
                "AND status = 'COMPLETED' AND record_id = ANY(:ids)",
                ids=opportunity_ids,
            )
            assert summary.opportunities_at_risk == scalar(
                "SELECT count(DISTINCT record_id) FROM workflow_executions "
                "WHERE workflow_name = 'retention' AND record_id = ANY(:ids)",
                ids=opportunity_ids,
            )
            # Cases in the org = high-risk churn predictions = churn retention runs.
            assert summary.churn_cases == scalar(
                "SELECT count(*) FROM ml_predictions WHERE prediction_type = 'churn' "
                "AND probability > 70 AND account_id = ANY(:ids)",
                ids=account_ids,
            )
            assert summary.churn_cases == scalar(
                "SELECT count(*) FROM workflow_executions WHERE workflow_name = "
                "'churn_prevention' AND record_id = ANY(:ids)",
                ids=account_ids,
            )
            assert summary.accounts_assessed == scalar(
                "SELECT count(*) FROM ml_predictions WHERE prediction_type = 'churn' "
                "AND account_id = ANY(:ids)",
                ids=account_ids,
            )
            commands = [
                str(c)
                for (c,) in db.execute(
                    text("SELECT command_id FROM salesforce_commands WHERE sink = :sink"),
                    {"sink": summary.demo_id},
                )
            ]
            assert len(commands) == summary.salesforce_writes > 0
            results = [
                derived_event_id(c, "projections.salesforce_sink", "result") for c in commands
            ]
            assert summary.sync_log_rows == scalar(
                "SELECT count(*) FROM sync_log WHERE event_id = ANY(:ids)", ids=results
            )
            assert summary.sync_log_rows == summary.salesforce_writes
            by_type = {
                str(purpose): int(count)
                for purpose, count in db.execute(
                    text(
                        "SELECT prediction_type, count(*) FROM ml_predictions "
                        "WHERE account_id = ANY(:ids) GROUP BY prediction_type"
                    ),
                    {"ids": lead_ids + opportunity_ids + account_ids},
                )
            }
            assert summary.predictions_by_type == by_type
    finally:
        engine.dispose()
