"""The live /metrics output of a MetricsServer passes `promtool check metrics` cleanly."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from sfe import metrics
from tests.observability.support import run_promtool

LABEL_VALUE = "promtool-check"


@pytest.fixture
def server() -> Iterator[metrics.MetricsServer]:
    server = metrics.MetricsServer("127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture
def every_family_has_a_sample() -> Iterator[None]:
    """One series of every labelled family of sfe/metrics.py, removed again afterwards.

    Unlabelled families are already exposed with a sample; unlabelled gauges are set
    and restored.
    """
    labelled: list[tuple[MetricWrapperBase, tuple[str, ...]]] = []
    restore: list[tuple[Gauge, float]] = []
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        values = tuple(LABEL_VALUE for _ in value._labelnames)
        child = value.labels(*values) if values else value
        if values:
            labelled.append((value, values))
        if isinstance(child, Histogram):
            child.observe(0.3)
        elif isinstance(child, Gauge):
            if not values:
                restore.append((child, child._value.get()))
            child.set(0.5)
        elif isinstance(child, Counter) and values:
            child.inc()
    yield
    for family, values in labelled:
        family.remove(*values)
    for gauge, previous in restore:
        gauge.set(previous)


def scrape(server: metrics.MetricsServer) -> str:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        return response.read().decode()


def test_live_metrics_pass_promtool_check_metrics(
    promtool: Path, server: metrics.MetricsServer, every_family_has_a_sample: None
) -> None:
    body = scrape(server)
    for family, kind in (("sfe_operations_total", "counter"), ("sfe_model_score", "histogram")):
        assert f"# TYPE {family} {kind}" in body
    assert f'sfe_operations_total{{component="{LABEL_VALUE}",outcome="{LABEL_VALUE}"}} 1.0' in body
    result = run_promtool(promtool, "check", "metrics", stdin=body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_promtool_check_metrics_reports_a_badly_named_family(promtool: Path) -> None:
    """The check above is not vacuous: a counter without `_total` is reported."""
    bad = (
        "# HELP sfe_things Things.\n"
        "# TYPE sfe_things counter\n"
        "sfe_things 1\n"
        "# HELP sfe_wait_milliseconds Waiting.\n"
        "# TYPE sfe_wait_milliseconds gauge\n"
        "sfe_wait_milliseconds 3\n"
    )
    result = run_promtool(promtool, "check", "metrics", stdin=bad)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "sfe_things" in output and "sfe_wait_milliseconds" in output
