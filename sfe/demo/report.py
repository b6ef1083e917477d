"""The demo's summary: read back from the org and the read models, printed, and an HTML report.

Every number of the summary comes from where a user would look for it afterwards:

- **the org** (the simulator, through its REST API): leads with ``AI_Enhanced_Score__c``
  by ``AI_Lead_Route__c``; opportunities flagged at risk (distinct ``WhatId`` of the
  "At-risk deal: talking points" tasks); won deals whose ``Provisioning_Status__c`` is
  ``Complete`` (and the distinct accounts among them: accounts onboarded) or
  ``Failed...``; accounts with a ``Churn_Risk__c``; churn cases (``Case`` records);
  upsell tasks ("Expansion opportunity: ..."); the daily API usage counter;
- **PostgreSQL**: ``ml_predictions`` rows and ``workflow_executions`` runs of the demo's
  records, the sink's handled commands (``salesforce_commands`` under the demo's sink
  name) and their ``sync_log`` rows.

Definitions:

- *end-to-end latency* of a lead: its ``LastModifiedDate`` minus its ``CreatedDate`` in
  the org, i.e. from the commit of the lead to the commit of the AI fields the pipeline
  wrote back (CDC, ingest, Kafka, scoring, sink; nothing else modifies the demo's
  leads). Millisecond resolution;
- *decision latency*: the append time of the ``LeadScored`` record minus the lead's CDC
  commit time (the decision's own time);
- *API calls per 1,000 updates*: 1,000 x the API calls the pipeline made (the org's
  counter minus the demo's own calls, which it counts) / the Salesforce writes the
  pipeline asked for (record updates and creates handled by the sink).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from simple_salesforce import Salesforce
from sqlalchemy import Engine, text

from schema_registry.ids import derived_event_id

#: Subjects of the tasks the flows create, as the org holds them.
AT_RISK_TASK = "At-risk deal: talking points"
UPSELL_TASK_PREFIX = "Expansion opportunity:"
ROUTES = ("Senior AE", "Nurture", "MQL")
SINK_AGENT = "projections.salesforce_sink"
#: Prediction purposes and the model each comes from.
MODELS = {"lead_score": "lead", "win_probability": "win", "churn": "churn", "upsell": "upsell"}


@dataclass(frozen=True)
class Percentiles:
    """p50, p95 and p99 of a sample (seconds), with its size."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        """Percentiles by linear interpolation between closest ranks (numpy's default)."""
        if not values:
            return cls(0, None, None, None)
        import numpy as np

        p50, p95, p99 = (
            float(v) for v in np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
        )
        return cls(len(values), p50, p95, p99)

    def text(self) -> str:
        """``p50 0.84 s, p95 1.90 s, p99 2.60 s``."""
        if self.count == 0:
            return "no samples"
        return f"p50 {_s(self.p50)}, p95 {_s(self.p95)}, p99 {_s(self.p99)}"


def _n(count: int, noun: str) -> str:
    """``1 churn case``, ``3 churn cases``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def parse_sf_datetime(value: str) -> datetime:
    """A Salesforce datetime (``2026-11-26T10:00:00.123+0000``) as an aware datetime."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass
class OrgFacts:
    """What the org holds about the demo's records."""

    leads_scored: dict[str, int] = field(default_factory=dict)
    lead_latencies: list[float] = field(default_factory=list)
    onboarding_completed: int = 0
    onboarding_failed: int = 0
    accounts_onboarded: int = 0
    opportunities_at_risk: int = 0
    at_risk_tasks: int = 0
    accounts_assessed: int = 0
    churn_cases: int = 0
    upsell_tasks: int = 0

    @property
    def scored(self) -> int:
        """Leads with an AI score."""
        return sum(self.leads_scored.values())


def org_facts(sf: Salesforce) -> OrgFacts:
    """Read the summary's org numbers (a handful of SOQL queries)."""
    facts = OrgFacts(leads_scored=dict.fromkeys(ROUTES, 0))
    leads = sf.query_all(
        "SELECT Id, CreatedDate, LastModifiedDate, AI_Lead_Route__c FROM Lead "
        "WHERE AI_Enhanced_Score__c != null"
    )["records"]
    for lead in leads:
        route = str(lead["AI_Lead_Route__c"])
        facts.leads_scored[route] = facts.leads_scored.get(route, 0) + 1
        latency = parse_sf_datetime(lead["LastModifiedDate"]) - parse_sf_datetime(
            lead["CreatedDate"]
        )
        facts.lead_latencies.append(latency.total_seconds())
    won = sf.query_all(
        "SELECT Id, AccountId, Provisioning_Status__c FROM Opportunity "
        "WHERE StageName = 'Closed Won'"
    )["records"]
    complete = [o for o in won if o["Provisioning_Status__c"] == "Complete"]
    facts.onboarding_completed = len(complete)
    facts.onboarding_failed = sum(
        1 for o in won if str(o["Provisioning_Status__c"] or "").startswith("Failed")
    )
    facts.accounts_onboarded = len({o["AccountId"] for o in complete})
    at_risk = sf.query_all(f"SELECT WhatId FROM Task WHERE Subject = '{AT_RISK_TASK}'")["records"]
    facts.at_risk_tasks = len(at_risk)
    facts.opportunities_at_risk = len({t["WhatId"] for t in at_risk})
    facts.accounts_assessed = int(
        sf.query("SELECT COUNT() FROM Account WHERE Churn_Risk__c != null")["totalSize"]
    )
    facts.churn_cases = int(sf.query("SELECT COUNT() FROM Case")["totalSize"])
    facts.upsell_tasks = int(
        sf.query(f"SELECT COUNT() FROM Task WHERE Subject LIKE '{UPSELL_TASK_PREFIX}%'")[
            "totalSize"
        ]
    )
    return facts


@dataclass
class ReadModelFacts:
    """What PostgreSQL holds about the demo's records and its sink."""

    probabilities: dict[str, list[float]] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    sync_log_rows: int = 0

    def predictions(self, purpose: str) -> int:
        """``ml_predictions`` rows of ``purpose``."""
        return len(self.probabilities.get(purpose, ()))

    def run_count(self, workflow: str, *statuses: str) -> int:
        """``workflow_executions`` runs of ``workflow`` (in ``statuses``, if given)."""
        found = self.runs.get(workflow, {})
        return sum(n for status, n in found.items() if not statuses or status in statuses)

    @property
    def writes(self) -> int:
        """Commands the sink handled, whatever their outcome."""
        return sum(self.commands.values())


def read_model_facts(engine: Engine, sink_name: str, record_ids: Iterable[str]) -> ReadModelFacts:
    """Read the summary's PostgreSQL numbers for the demo's records and sink."""
    ids = sorted(set(record_ids))
    facts = ReadModelFacts()
    with engine.connect() as connection:
        for purpose, probability in connection.execute(
            text(
                "SELECT prediction_type, probability FROM ml_predictions "
                "WHERE account_id = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        ):
            facts.probabilities.setdefault(str(purpose), []).append(float(probability))
        for workflow, status, count in connection.execute(
            text(
                "SELECT workflow_name, status, count(*) FROM workflow_executions "
                "WHERE record_id = ANY(:ids) GROUP BY workflow_name, status"
            ),
            {"ids": ids},
        ):
            facts.runs.setdefault(str(workflow), {})[str(status)] = int(count)
        command_ids = [
            str(command_id)
            for (command_id,) in connection.execute(
                text("SELECT command_id FROM salesforce_commands WHERE sink = :sink"),
                {"sink": sink_name},
            )
        ]
        for outcome, count in connection.execute(
            text(
                "SELECT outcome, count(*) FROM salesforce_commands WHERE sink = :sink "
                "GROUP BY outcome"
            ),
            {"sink": sink_name},
        ):
            facts.commands[str(outcome)] = int(count)
        results = [derived_event_id(c, SINK_AGENT, "result") for c in command_ids]
        facts.sync_log_rows = int(
            connection.execute(
                text("SELECT count(*) FROM sync_log WHERE event_id = ANY(:ids)"), {"ids": results}
            ).scalar_one()
        )
    return facts


@dataclass
class Summary:
    """The demo's outcome, as printed and as written to ``summary.json``."""

    demo_id: str
    topic_prefix: str
    folder: str
    duration_s: float
    rate: float
    wall_s: float = 0.0
    leads_created: int = 0
    leads_scored: dict[str, int] = field(default_factory=dict)
    opportunities_created: int = 0
    stage_changes: int = 0
    closed_won: int = 0
    opportunities_at_risk: int = 0
    onboarding_completed: int = 0
    onboarding_failed: int = 0
    accounts_onboarded: int = 0
    accounts_created: int = 0
    usage_signals: int = 0
    accounts_assessed: int = 0
    churn_cases: int = 0
    upsell_candidates: int = 0
    api_calls_total: int = 0
    api_calls_demo: int = 0
    api_calls_pipeline: int = 0
    api_calls_sink: int | None = None
    salesforce_writes: int = 0
    writes_by_outcome: dict[str, int] = field(default_factory=dict)
    api_calls_per_1000_updates: float | None = None
    latency_e2e: Percentiles = field(default_factory=lambda: Percentiles.of(()))
    latency_decision: Percentiles = field(default_factory=lambda: Percentiles.of(()))
    events_total: int = 0
    events_peak_per_second: int = 0
    predictions_by_type: dict[str, int] = field(default_factory=dict)
    runs_by_workflow: dict[str, int] = field(default_factory=dict)
    sync_log_rows: int = 0
    drained: bool = False
    pending: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    metrics_urls: dict[str, str] = field(default_factory=dict)
    report_path: str = ""

    @property
    def leads_scored_total(self) -> int:
        """Leads with an AI score in the org."""
        return sum(self.leads_scored.values())

    def lines(self) -> list[str]:
        """The summary as the terminal shows it."""
        bands = " · ".join(f"{route} {self.leads_scored.get(route, 0):,}" for route in ROUTES)
        per_1000 = (
            f"{self.api_calls_per_1000_updates:.1f}"
            if self.api_calls_per_1000_updates is not None
            else "-"
        )
        sink = f" (sink {self.api_calls_sink:,})" if self.api_calls_sink is not None else ""
        predictions = ", ".join(f"{k} {v:,}" for k, v in sorted(self.predictions_by_type.items()))
        runs = ", ".join(f"{k} {v:,}" for k, v in sorted(self.runs_by_workflow.items()))
        state = "drained" if self.drained else "NOT drained: " + "; ".join(self.pending)
        throughput = self.events_total / self.wall_s if self.wall_s else 0.0
        return [
            f"== sfe demo {self.demo_id}: {self.duration_s:.0f} s of workload at "
            f"{self.rate:g} leads/s (x0.5, x1, x2), {self.wall_s:.0f} s in all; pipeline {state} ==",
            f"Leads scored      {self.leads_scored_total:,} of {self.leads_created:,} created: {bands}",
            f"Opportunities     {self.opportunities_created:,} created, {self.stage_changes:,} "
            f"stage changes, {self.closed_won:,} Closed Won; "
            f"{self.opportunities_at_risk:,} flagged at risk",
            f"Onboarding        {self.accounts_onboarded:,} accounts onboarded "
            f"({self.onboarding_completed:,} sagas completed, {self.onboarding_failed:,} failed)",
            f"Churn and upsell  {self.accounts_assessed:,} accounts assessed, "
            f"{_n(self.churn_cases, 'churn case')} opened, "
            f"{_n(self.upsell_candidates, 'upsell candidate')}",
            f"Salesforce API    {self.api_calls_pipeline:,} calls by the pipeline{sink} for "
            f"{self.salesforce_writes:,} record writes = {per_1000} calls per 1,000 updates "
            f"(org total {self.api_calls_total:,}, of which the demo's workload {self.api_calls_demo:,})",
            f"Latency           lead created -> AI fields in Salesforce (n={self.latency_e2e.count:,}): "
            f"{self.latency_e2e.text()}",
            f"                  CDC commit -> lead decision in Kafka "
            f"(n={self.latency_decision.count:,}): {self.latency_decision.text()}",
            f"Throughput        {self.events_total:,} events in the log, {throughput:,.0f}/s on "
            f"average, {self.events_peak_per_second:,}/s at the peak",
            f"PostgreSQL        ml_predictions: {predictions or 'none'}",
            f"                  workflow_executions: {runs or 'none'}; sync_log: "
            f"{self.sync_log_rows:,} rows",
        ]

    def to_json(self) -> str:
        """The summary as JSON (``summary.json``)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Summary:
        """A summary read back from :meth:`to_json`."""
        data = json.loads(raw)
        for key in ("latency_e2e", "latency_decision"):
            data[key] = Percentiles(**data[key])
        return cls(**data)


@dataclass
class Series:
    """The raw material of the report's plots."""

    lead_latencies: list[float] = field(default_factory=list)
    decision_latencies: list[float] = field(default_factory=list)
    probabilities: dict[str, list[float]] = field(default_factory=dict)
    #: Per-second counts (second of the run -> count) by name.
    throughput: dict[str, Mapping[int, int]] = field(default_factory=dict)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(series: Series) -> dict[str, str]:
    """The three plots as base64 PNGs: latency, score distributions, throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, values, title in (
        (axes[0], series.lead_latencies, "Lead created -> AI fields in Salesforce"),
        (axes[1], series.decision_latencies, "CDC commit -> lead decision in Kafka"),
    ):
        percentiles = Percentiles.of(values)
        if values:
            axis.hist(values, bins=40, color="#4C72B0")
            for value, label, style in (
                (percentiles.p50, "p50", "-"),
                (percentiles.p95, "p95", "--"),
                (percentiles.p99, "p99", ":"),
            ):
                if value is not None:
                    axis.axvline(
                        value, color="#C44E52", linestyle=style, label=f"{label} {_s(value)}"
                    )
            axis.legend()
        axis.set_title(f"{title} (n={len(values):,})")
        axis.set_xlabel("seconds")
        axis.set_ylabel("leads")
    images["latency"] = _png(figure)
    plt.close(figure)

    figure, axes = plt.subplots(2, 2, figsize=(12, 7))
    for axis, (purpose, model) in zip(axes.flat, MODELS.items(), strict=True):
        values = series.probabilities.get(purpose, [])
        if values:
            axis.hist(values, bins=20, range=(0, 100), color="#55A868")
        axis.set_title(f"{model} model: {purpose} (n={len(values):,})")
        axis.set_xlabel("probability (%)")
        axis.set_ylabel("records")
    figure.tight_layout()
    images["scores"] = _png(figure)
    plt.close(figure)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    end = max((max(c) + 1 for c in series.throughput.values() if c), default=1)
    seconds = list(range(0, end))
    for index, (name, counts) in enumerate(series.throughput.items()):
        axis = top if index == 0 else bottom
        axis.plot(seconds, [counts.get(s, 0) for s in seconds], label=name, linewidth=1.2)
    top.set_yscale("symlog")
    top.set_ylabel("records per second")
    top.set_title("Throughput over time")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("seconds since the demo started")
    for axis in (top, bottom):
        axis.legend(loc="upper right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    images["throughput"] = _png(figure)
    plt.close(figure)
    return images


def write_html(path: Path, summary: Summary, series: Series) -> None:
    """One self-contained HTML file: the summary, its definitions and the three plots."""
    images = plots(series)
    rows = "\n".join(f"<pre>{html.escape(line)}</pre>" for line in summary.lines())
    definitions = html.escape(__doc__ or "")
    endpoints = "".join(
        f"<li>{html.escape(name)}: <code>{html.escape(url)}</code></li>"
        for name, url in summary.metrics_urls.items()
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sfe demo {html.escape(summary.demo_id)}</title>
<style>body{{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}}
pre{{margin:.15em 0;font-size:13px}} img{{max-width:100%;border:1px solid #ddd;margin:.5em 0}}
details pre{{white-space:pre-wrap}}</style></head><body>
<h1>sfe demo {html.escape(summary.demo_id)}</h1>
<p>Topics under <code>{html.escape(summary.topic_prefix)}</code>; files in
<code>{html.escape(summary.folder)}</code>.</p>
<h2>Summary</h2>
{rows}
<h2>Latency distribution</h2>
<img alt="latency distribution" src="data:image/png;base64,{images["latency"]}">
<h2>Score distributions</h2>
<img alt="score distributions" src="data:image/png;base64,{images["scores"]}">
<h2>Throughput over time</h2>
<img alt="throughput over time" src="data:image/png;base64,{images["throughput"]}">
<h2>Metrics endpoints (while the processes ran)</h2><ul>{endpoints}</ul>
<details><summary>Where the numbers come from</summary><pre>{definitions}</pre></details>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")


def peak(counts: Mapping[int, int]) -> int:
    """The largest per-second count."""
    return max(counts.values(), default=0)
