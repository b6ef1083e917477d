"""The metrics endpoint: Prometheus exposition, health and readiness."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from sfe import metrics


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def server() -> metrics.MetricsServer:
    state = {"ready": False}
    server = metrics.MetricsServer("127.0.0.1", 0, ready=lambda: state["ready"]).start()
    server.state = state  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_metrics_expose_the_declared_families(server: metrics.MetricsServer) -> None:
    metrics.EVENTS_CONSUMED.labels(topic="sf.cdc.Lead").inc(3)
    metrics.SF_API_CALLS.labels(endpoint="composite/sobjects").inc()
    status, body = fetch(server.url + "/metrics")
    assert status == 200
    assert 'sfe_events_consumed_total{topic="sf.cdc.Lead"}' in body
    assert "# TYPE sfe_processing_latency_seconds histogram" in body
    assert 'sfe_salesforce_api_calls_total{endpoint="composite/sobjects"}' in body


def test_health_and_readiness(server: metrics.MetricsServer) -> None:
    assert fetch(server.url + "/healthz") == (200, "ok\n")
    assert fetch(server.url + "/readyz")[0] == 503
    server.state["ready"] = True  # type: ignore[attr-defined]
    assert fetch(server.url + "/readyz") == (200, "ready\n")
    status, body = fetch(server.url + "/nope")
    assert status == 404 and "/metrics" in body


def test_a_job_whose_port_is_taken_serves_on_another() -> None:
    worker = metrics.MetricsServer("127.0.0.1", 0).start()
    taken = int(worker.url.rsplit(":", 1)[1])
    job = metrics.MetricsServer.for_job("127.0.0.1", taken)
    try:
        assert job.url != worker.url
        assert fetch(job.url + "/metrics")[0] == 200
    finally:
        job.stop()
        worker.stop()
