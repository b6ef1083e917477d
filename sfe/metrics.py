"""Prometheus metrics of every ``sfe`` process, and the HTTP endpoint that serves them.

All metric families are declared here, once, so names, units and label sets stay
consistent across processes and the alert rules and dashboards in ``docker/`` can
rely on them. Names follow Prometheus conventions: base units, ``_total`` counters,
``_seconds`` histograms, small bounded label sets (never record ids). Each process
serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``SFE_METRICS_BIND`` (loopback
by default) and ``SFE_METRICS_PORT``; with several workers each gets its own port
and Prometheus tells them apart by the ``instance`` label it adds when scraping.

The endpoint has no authentication and no admin operations: it only reads. It is meant
for loopback (a Prometheus agent or sidecar on the same host); widening
``SFE_METRICS_BIND`` exposes metric values to whoever reaches the port, so it logs a
warning, and the network or a reverse proxy must restrict access (docs/network.md).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_SCORE_BUCKETS = tuple(step / 10 for step in range(1, 11))

# Traffic through Kafka.
EVENTS_CONSUMED = Counter("sfe_events_consumed_total", "Records consumed, per topic.", ["topic"])
EVENTS_PRODUCED = Counter("sfe_events_produced_total", "Records produced, per topic.", ["topic"])
CONSUMER_LAG = Gauge(
    "sfe_consumer_lag_records",
    "Records behind the partition's end.",
    ["group", "topic", "partition"],
)
OPERATIONS = Counter(
    "sfe_operations_total",
    "Units of work by component and outcome (success or error); the error rate's basis.",
    ["component", "outcome"],
)
STATE_PARTITIONS = Gauge(
    "sfe_state_partitions",
    "Partitions of an agent's state this process holds (restored and kept current).",
    ["state"],
)
STATE_RESTORE = Histogram(
    "sfe_state_restore_seconds",
    "Time to read an agent's state partitions back when the group assigns them.",
    ["state"],
    buckets=_LATENCY_BUCKETS,
)
DEAD_LETTERS = Counter(
    "sfe_dead_letters_total",
    "Records sent to a dead-letter topic, per topic and reason.",
    ["topic", "reason"],
)

# Latency from Salesforce's commitTimestamp.
PROCESSING_LATENCY = Histogram(
    "sfe_processing_latency_seconds",
    "Time from Salesforce commitTimestamp to a stage (decision, salesforce_applied).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
SYNC_LAG = Gauge(
    "sfe_sync_lag_seconds",
    "Age of the newest change a projection has applied, at its last batch.",
    ["projection"],
)

# Ingestion from the Salesforce streaming API.
INGESTED = Counter(
    "sfe_ingest_events_total", "Streaming events appended, per channel.", ["channel"]
)
INGEST_DUPLICATES = Counter(
    "sfe_ingest_duplicates_total", "Redelivered streaming events dropped, per channel.", ["channel"]
)
INGEST_RECOVERIES = Counter(
    "sfe_ingest_recoveries_total",
    "Automatic recoveries (gap, overflow, replay_expired, unknown_client, session_expired).",
    ["kind"],
)

# Models.
INFERENCE_LATENCY = Histogram(
    "sfe_model_inference_seconds", "ONNX inference time per call.", ["model"], buckets=_FAST_BUCKETS
)
MODEL_SCORES = Histogram(
    "sfe_model_score",
    "Distribution of predicted probabilities.",
    ["model", "version"],
    buckets=_SCORE_BUCKETS,
)
FEATURE_DRIFT = Gauge(
    "sfe_feature_psi",
    "Population stability index of a feature against training.",
    ["model", "feature"],
)

# Salesforce API.
SF_API_CALLS = Counter(
    "sfe_salesforce_api_calls_total", "Salesforce API calls, per endpoint.", ["endpoint"]
)
SF_API_ERRORS = Counter(
    "sfe_salesforce_api_errors_total", "Salesforce API errors, per errorCode.", ["error_code"]
)
SF_API_LATENCY = Histogram(
    "sfe_salesforce_api_request_seconds",
    "Salesforce API call duration.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
SF_API_USED = Gauge(
    "sfe_salesforce_api_used_requests", "Daily API requests used (Sforce-Limit-Info)."
)
SF_API_LIMIT = Gauge(
    "sfe_salesforce_api_limit_requests", "Daily API request limit (Sforce-Limit-Info)."
)

# Workflows and business outcomes.
WORKFLOW_RUNS = Counter(
    "sfe_workflow_runs_total", "Workflow runs, per workflow and outcome.", ["workflow", "outcome"]
)
LEADS_PROCESSED = Counter(
    "sfe_leads_processed_total", "Leads scored, per band (high, nurture, mql).", ["band"]
)
OPPORTUNITIES_SYNCED = Counter(
    "sfe_opportunities_synced_total", "Opportunity insights written to Salesforce."
)
CHURN_CASES_OPENED = Counter("sfe_churn_cases_opened_total", "High-priority churn cases opened.")

# Replay and reconciliation.
# The label is `task`, not `job`: Prometheus owns `job` and would rename ours on scrape.
REPLAY_EVENTS = Counter(
    "sfe_replay_events_total", "Events processed by replay or reconcile tasks.", ["task"]
)
REPLAY_PROGRESS = Gauge(
    "sfe_replay_progress_ratio", "Progress of a replay or reconcile task (0..1).", ["task"]
)
RECONCILE_DIFFERENCES = Counter(
    "sfe_reconcile_differences_total",
    "AI fields found holding another value in Salesforce than the log says, per object.",
    ["object"],
)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(self, bind: str, port: int, ready: Callable[[], bool] = lambda: True) -> None:
        """Bind now (port 0 picks a free port); serve after :meth:`start`."""
        if not is_loopback(bind):
            log.warning(
                "metrics endpoint bound to %s: /metrics, /healthz and /readyz answer anyone "
                "who reaches port %s without authentication",
                bind or "all interfaces",
                port,
            )
        handler = _handler_class(ready)
        self._server = ThreadingHTTPServer((bind, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @classmethod
    def for_job(cls, bind: str, port: int) -> MetricsServer:
        """A started endpoint for a one-off job (replay, reconcile).

        On ``port`` when it is free; when a long-running process already holds it
        (the usual case on a worker host), on a free port instead, so the job still
        runs and shows its progress at the URL it prints.
        """
        try:
            return cls(bind, port).start()
        except OSError:
            return cls(bind, 0).start()

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the endpoint is bound to."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MetricsServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _handler_class(ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                is_ready = _safe(ready)
                self._reply(
                    200 if is_ready else 503,
                    b"ready\n" if is_ready else b"not ready\n",
                    "text/plain",
                )
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return Handler


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a failing readiness check means "not ready"
        return False
