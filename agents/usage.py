"""Per-account usage aggregates, folded from the ecosystem's ``usage.signals`` topic.

The ~93 ecosystem systems report product usage as :class:`UsageSignalReported` events
(topic ``usage.signals``, keyed by account id; ``system``, ``metric``, ``value``,
``observed_at``). The churn and upsell workflows keep one aggregate per account in a
Faust table (JSON changelog) and turn it into the record their models score.

**The aggregate** is a JSON-ready dict::

    {"account_id": "001...",
     "newest_day": "2026-01-03",                       # newest observed day seen
     "metrics": {"daily_active_users":                 # metric name
                   {"2026-01-03":                      # observed day (UTC, ISO date)
                      {"autohelix": {"value": 412.0,   # reporting system
                                     "observed_at": "2026-01-03T23:00:00+00:00"}}}}}

Per metric, day and reporting system it keeps the latest value: a value reported for
the same metric, day and system replaces the kept one only if its ``observed_at`` is
later than or equal to the kept one's. Days more than :data:`RETENTION_DAYS` before the
newest day seen (any metric) are pruned; a signal for such a day is ignored. Folding is
idempotent (the same signal twice changes nothing) and, apart from exact ``observed_at``
ties, independent of the order signals arrive in. Non-finite values are ignored.

**Metrics** the models use are listed in :data:`METRICS` (names in :data:`METRIC_NAMES`,
documented for the ecosystem teams by :func:`describe_metrics`). Each becomes one key of
the scored record, under the Salesforce field name the feature definitions read
(:mod:`ml.features.definitions`), so the Account snapshot's value is overridden by a
fresher aggregate. Several systems may report the same metric: counts are summed across
systems, gauges take the most recently observed value, daily active users the largest
report of each day. Unknown metrics are kept (and pruned) like the others but unused.

Derived features are never written under their own name (``seat_utilization``,
``usage_trend_30d``, ``late_payments_90d``): a batch frame reads a feature's name
column whenever any record has it, which would hide the derivation for the others.
Their inputs are written instead (``Licensed_Seats__c``, ``Daily_Active_Users``,
``Payments``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from schema_registry.events import UsageSignalReported

Aggregate = dict[str, Any]

#: Days of history kept per account, counted back from the newest day seen.
RETENTION_DAYS = 90
#: Length of the windows of the ``*_30d`` features and the daily active users series.
WINDOW_DAYS = 30


class MetricKind(StrEnum):
    """How the kept days of a metric become one record key on the as-of date."""

    #: The value of the newest day up to the as-of date (across systems: latest observed).
    LATEST = "latest"
    #: The sum over the 30 days ending on the as-of date (across systems: summed).
    SUM_30D = "sum_30d"
    #: The daily values of the 30 days ending on the as-of date, oldest first, days
    #: without a report left out (across systems: the largest report of the day).
    DAILY_SERIES_30D = "daily_series_30d"
    #: Late invoices of the 90 days ending on the as-of date, as the ``Payments`` list
    #: ``[{"due", "paid"}]`` that :func:`ml.features.signals.late_payments` reads
    #: (across systems: summed).
    LATE_PAYMENTS_90D = "late_payments_90d"


@dataclass(frozen=True)
class Metric:
    """A usage metric the models use: the record key it fills, how, and what it means."""

    name: str
    key: str
    kind: MetricKind
    meaning: str


def _metric(name: str, key: str, kind: MetricKind, meaning: str) -> tuple[str, Metric]:
    return name, Metric(name, key, kind, meaning)


#: Known metrics by name. ``key`` is the record key the churn and upsell feature sets read.
METRICS: dict[str, Metric] = dict(
    (
        _metric(
            "daily_active_users",
            "Daily_Active_Users",
            MetricKind.DAILY_SERIES_30D,
            "distinct users active on the observed day (one report per day); feeds usage_trend_30d",
        ),
        _metric(
            "monthly_active_users",
            "Monthly_Active_Users__c",
            MetricKind.LATEST,
            "distinct users active in the 30 days up to the observed day; "
            "feeds monthly_active_users and seat_utilization",
        ),
        _metric(
            "licensed_seats",
            "Licensed_Seats__c",
            MetricKind.LATEST,
            "seats the account pays for; feeds seat_utilization",
        ),
        _metric(
            "feature_adoption_rate",
            "Feature_Adoption_Rate__c",
            MetricKind.LATEST,
            "percent (0-100) of licensed features used",
        ),
        _metric(
            "support_tickets",
            "Support_Ticket_Count_30d__c",
            MetricKind.SUM_30D,
            "support tickets opened on the observed day; feeds support_tickets_30d",
        ),
        _metric(
            "api_calls",
            "Api_Calls_30d__c",
            MetricKind.SUM_30D,
            "API requests on the observed day; feeds api_calls_30d",
        ),
        _metric(
            "storage_utilization",
            "Storage_Utilization__c",
            MetricKind.LATEST,
            "used / purchased storage (a ratio, 1.0 = full)",
        ),
        _metric("nps", "NPS_Score__c", MetricKind.LATEST, "latest NPS answer (-100 to 100)"),
        _metric(
            "engagement_score",
            "Usage_Score__c",
            MetricKind.LATEST,
            "engagement score (0-100); feeds engagement_score",
        ),
        _metric(
            "competitor_mentions",
            "Competitor_Mentions_30d__c",
            MetricKind.SUM_30D,
            "competitor names found in e-mails, calls and cases on the observed day",
        ),
        _metric(
            "late_payment",
            "Payments",
            MetricKind.LATE_PAYMENTS_90D,
            "invoices due on the observed day that were paid late or not paid when due "
            "(report 0 for a day whose invoices were paid on time); feeds late_payments_90d",
        ),
        _metric(
            "products_owned",
            "Products_Owned__c",
            MetricKind.LATEST,
            "active product subscriptions",
        ),
        _metric(
            "employee_growth_12m",
            "Employee_Growth_12m__c",
            MetricKind.LATEST,
            "relative headcount change over the last 12 months (0.1 = +10 %)",
        ),
        _metric(
            "annual_contract_value",
            "Annual_Contract_Value__c",
            MetricKind.LATEST,
            "annual contract value (currency)",
        ),
    )
)

#: The metric names the ecosystem systems may report and the models use.
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


def describe_metrics() -> str:
    """The known metrics as a Markdown table, for the ecosystem teams' documentation."""
    lines = [
        "| metric | becomes | aggregation | meaning |",
        "|---|---|---|---|",
    ]
    for metric in METRICS.values():
        lines.append(
            f"| `{metric.name}` | `{metric.key}` | {metric.kind.value} | {metric.meaning} |"
        )
    return "\n".join(lines)


def empty(account_id: str) -> Aggregate:
    """The aggregate of an account nothing has been reported about."""
    return {"account_id": account_id, "newest_day": None, "metrics": {}}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _prune(metrics: Mapping[str, Any], cutoff: str) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, days in metrics.items():
        recent = {day: systems for day, systems in days.items() if day >= cutoff}
        if recent:
            kept[name] = recent
    return kept


def evolve(aggregate: Aggregate | None, signal: UsageSignalReported) -> Aggregate:
    """The aggregate after ``signal`` (a new dict; ``aggregate`` is not modified)."""
    current = aggregate or empty(signal.subject)
    if not math.isfinite(signal.value):
        return current
    observed = _utc(signal.observed_at)
    day = observed.date()
    newest_text = current.get("newest_day")
    newest = max(day, date.fromisoformat(newest_text)) if newest_text else day
    cutoff = (newest - timedelta(days=RETENTION_DAYS - 1)).isoformat()
    if day.isoformat() < cutoff:
        return current
    metrics: dict[str, Any] = dict(current.get("metrics") or {})
    if newest_text is None or newest.isoformat() != newest_text:
        metrics = _prune(metrics, cutoff)
    days = dict(metrics.get(signal.metric) or {})
    systems = dict(days.get(day.isoformat()) or {})
    kept = systems.get(signal.system)
    if kept is not None and datetime.fromisoformat(kept["observed_at"]) > observed:
        return current
    systems[signal.system] = {"value": float(signal.value), "observed_at": observed.isoformat()}
    days[day.isoformat()] = systems
    metrics[signal.metric] = days
    return {
        "account_id": current.get("account_id") or signal.subject,
        "newest_day": newest.isoformat(),
        "metrics": metrics,
    }


def _latest_of_day(systems: Mapping[str, Any]) -> float:
    """The most recently observed report of one day (ties: the larger value)."""
    entry = max(
        systems.values(), key=lambda e: (datetime.fromisoformat(e["observed_at"]), e["value"])
    )
    return float(entry["value"])


def _daily(days: Mapping[str, Any], first: date, last: date, kind: MetricKind) -> dict[date, float]:
    """One value per reported day in ``[first, last]``, systems combined as ``kind`` says."""
    values: dict[date, float] = {}
    for text, systems in days.items():
        day = date.fromisoformat(text)
        if not first <= day <= last or not systems:
            continue
        reports = [float(e["value"]) for e in systems.values()]
        if kind is MetricKind.LATEST:
            values[day] = _latest_of_day(systems)
        elif kind is MetricKind.DAILY_SERIES_30D:
            values[day] = max(reports)
        else:
            values[day] = sum(reports)
    return values


def _value(metric: Metric, days: Mapping[str, Any], as_of: date) -> Any:
    """The record value of ``metric`` on ``as_of``, or None when nothing was reported."""
    kept_from = as_of - timedelta(days=RETENTION_DAYS - 1)
    if not _daily(days, kept_from, as_of, metric.kind):
        return None
    window_from = as_of - timedelta(days=WINDOW_DAYS - 1)
    if metric.kind is MetricKind.LATEST:
        values = _daily(days, kept_from, as_of, metric.kind)
        return values[max(values)]
    if metric.kind is MetricKind.SUM_30D:
        return float(sum(_daily(days, window_from, as_of, metric.kind).values()))
    if metric.kind is MetricKind.DAILY_SERIES_30D:
        series = _daily(days, window_from, as_of, metric.kind)
        return [series[day] for day in sorted(series)] if series else None
    payments: list[dict[str, str]] = []
    for day, count in sorted(_daily(days, kept_from, as_of, metric.kind).items()):
        late = {"due": day.isoformat(), "paid": (day + timedelta(days=1)).isoformat()}
        payments.extend(dict(late) for _ in range(max(0, round(count))))
    return payments


def features(
    aggregate: Aggregate | None, account_fields: Mapping[str, Any], as_of: date
) -> dict[str, Any]:
    """The record the churn and upsell models score for an account on ``as_of``.

    The Account snapshot's fields, overlaid with what the aggregate gives for the known
    metrics (:data:`METRICS`), reading only days up to ``as_of`` so a past date yields
    the record of that day. A metric with no report in the kept days leaves the Account
    field as it is; a ``SUM_30D`` metric reported in the kept days but not in the last
    30 gives 0; daily active users need a report in the last 30 days.
    """
    record = dict(account_fields)
    for name, days in ((aggregate or {}).get("metrics") or {}).items():
        metric = METRICS.get(name)
        if metric is None:
            continue
        value = _value(metric, days, as_of)
        if value is not None:
            record[metric.key] = value
    return record
