"""Usage aggregates: idempotent folding, pruning, and the record the models score."""

from __future__ import annotations

import copy
import math
from datetime import UTC, date, datetime, timedelta

import pytest

from agents import usage
from ml.features.definitions import CHURN, UPSELL
from schema_registry.events import UsageSignalReported

ACCOUNT = "001000000000001AAA"
AS_OF = date(2026, 1, 31)


def signal(
    metric: str,
    value: float,
    day: date,
    *,
    system: str = "autohelix",
    hour: int = 12,
    account: str = ACCOUNT,
) -> UsageSignalReported:
    observed = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return UsageSignalReported(
        id=f"sig-{metric}-{system}-{day.isoformat()}-{hour}-{value}",
        source=system,
        subject=account,
        time=observed,
        system=system,
        metric=metric,
        value=value,
        observed_at=observed,
    )


def fold(*signals: UsageSignalReported) -> usage.Aggregate:
    aggregate: usage.Aggregate | None = None
    for item in signals:
        aggregate = usage.evolve(aggregate, item)
    assert aggregate is not None
    return aggregate


def test_first_signal_builds_the_documented_shape() -> None:
    aggregate = usage.evolve(None, signal("nps", 42.0, date(2026, 1, 3), hour=23))
    assert aggregate == {
        "account_id": ACCOUNT,
        "newest_day": "2026-01-03",
        "metrics": {
            "nps": {
                "2026-01-03": {
                    "autohelix": {"value": 42.0, "observed_at": "2026-01-03T23:00:00+00:00"}
                }
            }
        },
    }


def test_the_same_signal_twice_changes_nothing_and_input_is_not_modified() -> None:
    first = fold(signal("api_calls", 100.0, date(2026, 1, 2)))
    before = copy.deepcopy(first)
    again = usage.evolve(first, signal("api_calls", 100.0, date(2026, 1, 2)))
    assert again == before
    assert first == before
    twice = usage.evolve(again, signal("api_calls", 100.0, date(2026, 1, 2)))
    assert twice == before


def test_a_later_report_of_the_same_day_replaces_an_earlier_one_never_the_reverse() -> None:
    day = date(2026, 1, 2)
    later = fold(signal("nps", 10.0, day, hour=8), signal("nps", 30.0, day, hour=20))
    assert later["metrics"]["nps"]["2026-01-02"]["autohelix"]["value"] == 30.0
    stale = fold(signal("nps", 30.0, day, hour=20), signal("nps", 10.0, day, hour=8))
    assert stale == later
    tie = fold(signal("nps", 30.0, day, hour=20), signal("nps", 35.0, day, hour=20))
    assert tie["metrics"]["nps"]["2026-01-02"]["autohelix"]["value"] == 35.0


def test_systems_are_kept_apart() -> None:
    day = date(2026, 1, 2)
    aggregate = fold(
        signal("support_tickets", 2.0, day, system="autohelix"),
        signal("support_tickets", 3.0, day, system="apex-os"),
    )
    assert set(aggregate["metrics"]["support_tickets"]["2026-01-02"]) == {"autohelix", "apex-os"}


def test_days_older_than_90_before_the_newest_are_pruned_in_any_order() -> None:
    old = signal("nps", 1.0, date(2025, 10, 1))
    edge = signal("nps", 2.0, date(2025, 10, 2))
    new = signal("api_calls", 5.0, date(2025, 12, 30))  # newest: 2025-10-02 is day 90
    forward = fold(old, edge, new)
    assert forward["newest_day"] == "2025-12-30"
    assert sorted(forward["metrics"]["nps"]) == ["2025-10-02"]
    assert fold(new, old, edge) == forward
    assert fold(edge, new, old) == forward
    later = usage.evolve(forward, signal("api_calls", 1.0, date(2025, 12, 31)))
    assert "nps" not in later["metrics"]
    assert sorted(later["metrics"]["api_calls"]) == ["2025-12-30", "2025-12-31"]


def test_non_finite_values_are_ignored() -> None:
    aggregate = fold(signal("nps", 3.0, date(2026, 1, 2)))
    assert usage.evolve(aggregate, signal("nps", math.nan, date(2026, 1, 3))) == aggregate
    assert usage.evolve(aggregate, signal("nps", math.inf, date(2026, 1, 3))) == aggregate


def test_latest_value_overrides_the_account_field_and_ignores_days_after_as_of() -> None:
    aggregate = fold(
        signal("monthly_active_users", 80.0, date(2026, 1, 10)),
        signal("monthly_active_users", 95.0, date(2026, 1, 30)),
        signal("monthly_active_users", 500.0, date(2026, 2, 2)),
        signal("licensed_seats", 100.0, date(2026, 1, 5)),
    )
    record = usage.features(aggregate, {"Name": "Acme", "Monthly_Active_Users__c": 10.0}, AS_OF)
    assert record["Name"] == "Acme"
    assert record["Monthly_Active_Users__c"] == 95.0
    assert record["Licensed_Seats__c"] == 100.0
    values = CHURN.row_values(record, AS_OF)
    assert values["monthly_active_users"] == 95.0
    assert values["seat_utilization"] == pytest.approx(0.95)


def test_counts_are_summed_over_30_days_and_across_systems() -> None:
    aggregate = fold(
        signal("support_tickets", 2.0, AS_OF, system="autohelix"),
        signal("support_tickets", 3.0, AS_OF, system="apex-os"),
        signal("support_tickets", 4.0, AS_OF - timedelta(days=29)),
        signal("support_tickets", 50.0, AS_OF - timedelta(days=30)),  # outside the window
        signal("api_calls", 1000.0, AS_OF - timedelta(days=60)),  # kept, none in the window
    )
    record = usage.features(aggregate, {"Support_Ticket_Count_30d__c": 99.0}, AS_OF)
    assert record["Support_Ticket_Count_30d__c"] == 9.0
    assert record["Api_Calls_30d__c"] == 0.0
    assert UPSELL.row_values(record, AS_OF)["support_tickets_30d"] == 9.0


def test_daily_active_users_become_the_series_the_usage_trend_reads() -> None:
    signals = [
        signal("daily_active_users", 100.0 if day < 15 else 60.0, AS_OF - timedelta(days=29 - day))
        for day in range(30)
    ]
    signals.append(signal("daily_active_users", 10.0, AS_OF, system="apex-os"))  # max wins
    signals.append(signal("daily_active_users", 999.0, AS_OF - timedelta(days=31)))
    record = usage.features(fold(*signals), {}, AS_OF)
    assert record["Daily_Active_Users"] == [100.0] * 15 + [60.0] * 15
    assert "usage_trend_30d" not in record
    assert CHURN.row_values(record, AS_OF)["usage_trend_30d"] == pytest.approx(-0.4)


def test_late_payments_become_the_payments_the_model_counts() -> None:
    aggregate = fold(
        signal("late_payment", 1.0, AS_OF - timedelta(days=10)),
        signal("late_payment", 2.0, AS_OF - timedelta(days=40), system="billing"),
        signal("late_payment", 0.0, AS_OF - timedelta(days=70)),
    )
    record = usage.features(aggregate, {}, AS_OF)
    assert record["Payments"] == [
        {"due": "2025-12-22", "paid": "2025-12-23"},
        {"due": "2025-12-22", "paid": "2025-12-23"},
        {"due": "2026-01-21", "paid": "2026-01-22"},
    ]
    assert CHURN.row_values(record, AS_OF)["late_payments_90d"] == 3.0
    on_time = fold(signal("late_payment", 0.0, AS_OF - timedelta(days=5)))
    assert CHURN.row_values(usage.features(on_time, {}, AS_OF), AS_OF)["late_payments_90d"] == 0


def test_unknown_metrics_are_kept_but_unused_and_no_aggregate_gives_the_fields() -> None:
    aggregate = fold(signal("quantum_flux", 7.0, AS_OF))
    assert "quantum_flux" in aggregate["metrics"]
    fields = {"Name": "Acme", "NPS_Score__c": 12.0}
    assert usage.features(aggregate, fields, AS_OF) == fields
    assert usage.features(None, fields, AS_OF) == fields


def test_every_metric_feeds_a_key_a_model_reads() -> None:
    readable = {key for fs in (CHURN, UPSELL) for f in fs.features for key in f.keys}
    readable |= {"Daily_Active_Users", "Payments", "Licensed_Seats__c"}
    assert set(usage.METRIC_NAMES) == set(usage.METRICS)
    for metric in usage.METRICS.values():
        assert metric.key in readable, metric.name
    table = usage.describe_metrics()
    assert "| `daily_active_users` | `Daily_Active_Users` | daily_series_30d |" in table
