"""Every metric that alerts and dashboards query is one that sfe processes expose."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from sfe import metrics
from tests.observability.promql import (
    PROMETHEUS_SERIES,
    declared_families,
    exposed_names,
    family_of,
    referenced_metrics,
    variable_query_metrics,
)
from tests.observability.support import (
    dashboard_expressions,
    rule_expressions,
    variable_queries,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (component) (rate(sfe_operations_total{outcome="error"}[5m]))'
            " / sum by (component) (rate(sfe_operations_total[5m])) > 0.01",
            {"sfe_operations_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (endpoint, le) "
            "(rate(sfe_salesforce_api_request_seconds_bucket[$__rate_interval])))",
            {"sfe_salesforce_api_request_seconds_bucket"},
        ),
        (
            "predict_linear(max(a_used)[1h:5m], 4 * 3600) > on() group_left max(b_limit > 0)",
            {"a_used", "b_limit"},
        ),
        ("x_total unless x_total offset 10m or vector(0)", {"x_total"}),
        ('count(up{job=~"sfe.*", instance!="by (x)"} == 0) or vector(1e3)', {"up"}),
        ("time() - process_start_time_seconds", {"process_start_time_seconds"}),
        ('{__name__="by_name", job="x"}', {"by_name"}),
        ("sum(increase(c_total[$__range])) * 3600", {"c_total"}),
        ("max without (instance) (g) and bool h", {"g", "h"}),
    ],
)
def test_scanner_finds_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert referenced_metrics(expr) == names


def test_scanner_reads_grafana_variable_queries() -> None:
    assert variable_query_metrics('label_values(up{job=~"sfe.*"}, job)') == {"up"}
    assert variable_query_metrics("label_values(sfe_model_score_count, model)") == {
        "sfe_model_score_count"
    }
    assert variable_query_metrics("label_values(job)") == set()


def test_a_renamed_metric_is_unknown() -> None:
    families = declared_families()
    assert family_of("sfe_operations_total", families) == "sfe_operations"
    assert family_of("sfe_model_score_bucket", families) == "sfe_model_score"
    assert family_of("sfe_operation_total", families) is None
    assert family_of("sfe_operations", families) is None  # a counter's series end in _total
    assert family_of("sfe_sync_lag_seconds_bucket", families) is None  # a gauge has no buckets


@pytest.fixture(scope="module")
def live_names() -> Iterator[set[str]]:
    """Series names a running MetricsServer exposes (its process collector included)."""
    server = metrics.MetricsServer("127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            yield exposed_names(response.read().decode())
    finally:
        server.stop()


def unknown(expressions: list[tuple[str, str]], live: set[str]) -> list[str]:
    """'where: name' for each referenced name no process exposes.

    sfe_* names must be declared in sfe/metrics.py; other names must be Prometheus's own
    series or be exposed by a running MetricsServer (process_* from prometheus-client).
    """
    families = declared_families()
    problems = []
    for where, expr in expressions:
        for name in sorted(referenced_metrics(expr)):
            if name.startswith("sfe_"):
                known = family_of(name, families) is not None
            else:
                known = name in PROMETHEUS_SERIES or name in live
            if not known:
                problems.append(f"{where}: {name}")
    return problems


def test_alert_rules_query_only_declared_metrics(live_names: set[str]) -> None:
    expressions = rule_expressions()
    assert expressions
    for where, expr in expressions:
        assert referenced_metrics(expr), f"{where} queries no metric"
    assert unknown(expressions, live_names) == []


def test_dashboards_query_only_declared_metrics(live_names: set[str]) -> None:
    expressions = dashboard_expressions()
    assert expressions
    for where, expr in expressions:
        assert referenced_metrics(expr), f"{where} queries no metric"
    assert unknown(expressions, live_names) == []


def test_dashboard_variables_query_only_declared_metrics(live_names: set[str]) -> None:
    queries = variable_queries()
    assert queries
    resolved: list[tuple[str, str]] = []
    for where, query in queries:
        names = variable_query_metrics(query)
        assert names, f"{where}: not a label_values(selector, label) query"
        resolved.extend((where, name) for name in names)
    assert unknown(resolved, live_names) == []


def test_unknown_reports_a_renamed_metric(live_names: set[str]) -> None:
    """The checks above can fail: a misspelt sfe name or an invented process_ name is caught."""
    assert unknown(
        [
            ("a", "rate(sfe_operation_total[5m])"),
            ("b", "process_resident_memory_bytes"),
            ("c", "process_heap_bytes"),
        ],
        live_names,
    ) == ["a: sfe_operation_total", "c: process_heap_bytes"]


def test_every_declared_family_is_on_a_dashboard() -> None:
    families = declared_families()
    shown = {
        family_of(name, families)
        for _, expr in dashboard_expressions()
        for name in referenced_metrics(expr)
    }
    missing = sorted(set(families) - shown)
    assert missing == [], f"families on no dashboard: {missing}"
