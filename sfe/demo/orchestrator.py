"""``sfe demo``: the whole pipeline on one machine, driven by a realistic workload, then summed up.

:func:`run_demo` does, in order:

1. the local stack (``sfe stack up`` when it is not running) and the migrations;
2. the four models, trained and promoted when the registry has none (``sfe train``);
3. a fresh environment: topics under ``demo-<yyyymmddHHMMSS>.`` and an org simulator
   whose state lives in ``<state dir>/demo/<id>/`` (SQLite, so the org can be reopened
   and checked afterwards), with record ids of its own and three senior AEs;
4. the processes, each with its log file in that folder: ``sim serve``, ``ingest``,
   ``worker`` (all roles), ``ecosystem respond``, ``sink salesforce`` and
   ``projection run`` (its own sink and projection names, so positions never mix);
5. the workload (:mod:`sfe.demo.workload`) with a progress line every two seconds;
6. the drain: it waits (bounded) until the org and the read models hold everything the
   workload implies, then reads the summary back from them (:mod:`sfe.demo.report`);
7. the end: every process stopped by PID (unless ``keep_running``), the demo's topics
   deleted (unless kept), the summary printed and the HTML report written.

Ctrl-C or SIGTERM at any point stops what was started and exits with 130.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import requests
from prometheus_client.parser import text_string_to_metric_families
from simple_salesforce import Salesforce
from sqlalchemy import create_engine

from sfe import db
from sfe import stack as local_stack
from sfe.demo.processes import Children, DemoError, free_port, port_is_free
from sfe.demo.progress import Budget, Observer, progress_line
from sfe.demo.report import (
    OrgFacts,
    Percentiles,
    ReadModelFacts,
    Series,
    Summary,
    org_facts,
    peak,
    read_model_facts,
    write_html,
)
from sfe.demo.workload import (
    ApiCallCounter,
    ChurnResult,
    Plan,
    Workload,
    WorkloadStats,
    append_signals,
    auth_config,
    connect_counted,
    seed_org,
)
from sfe.kafka_security import client_config
from sfe.privacy.setup import ensure_local_master_key
from sfe.settings import Settings
from simulator.config import SimConfig

Echo = Callable[[str], None]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
MODEL_KINDS = ("churn", "lead", "upsell", "win")
PROGRESS_SECONDS = 2.0
#: Settings the demo's processes must not inherit: they would point at another org.
_NOT_INHERITED = (
    "SFE_SF_PRIVATE_KEY_FILE",
    "SFE_SF_PRIVATE_KEY",
    "SFE_SF_JWT_AUDIENCE",
    "SFE_SF_INTEGRATION_USER_ID",
    "SFE_SF_ORGANIZATION_ID",
    "SFE_SIM_JWT_CERT_FILE",
    # The demo logs in to its own simulator with the password flow: a flow, password or
    # client secret file from the user's shell would override its own.
    "SFE_SF_AUTH_FLOW",
    "SFE_SF_PASSWORD_FILE",
    "SFE_SF_CLIENT_SECRET_FILE",
)
#: Settings a user exports to reach the demo's org and topics from a shell.
_EXPORTED = (
    "SFE_SF_LOGIN_URL",
    "SFE_SF_CA_BUNDLE",
    "SFE_SF_CLIENT_SECRET",
    "SFE_SF_PASSWORD",
    "SFE_TOPIC_PREFIX",
)
_CHURN_OUTPUT = (
    r"(\d+) accounts assessed, (\d+) high risk \(cases opened\), (\d+) upsell candidates"
)


@dataclass(frozen=True)
class DemoOptions:
    """What the user chose on the command line."""

    duration: float = 120.0
    rate: float = 20.0
    keep_running: bool = False
    keep_topics: bool = False
    report: Path | None = None
    seed: int = 7
    #: Seconds to wait for the pipeline to drain (default: the duration, at least 120).
    drain_timeout: float | None = None


@dataclass
class DemoResult:
    """How the demo ended."""

    exit_code: int
    folder: Path
    summary: Summary | None = None


def new_demo_id(state_dir: Path) -> str:
    """``demo-<yyyymmddHHMMSS>``, with a suffix if that folder exists already."""
    base = "demo-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    candidate, n = base, 1
    while (state_dir / "demo" / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def run_demo(settings: Settings, options: DemoOptions, echo: Echo = print) -> DemoResult:
    """Run the demo end to end; never leaves a process behind unless asked to."""
    demo_id = new_demo_id(settings.state_dir)
    folder = (settings.state_dir / "demo" / demo_id).resolve()
    folder.mkdir(parents=True)
    demo = Demo(settings, options, demo_id, folder, echo)
    with interrupts_raise():
        code = demo.run()
    return DemoResult(code, folder, demo.summary)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleaning up is not interrupted: a second Ctrl-C must not leave processes behind."""
    if not _main_thread():
        yield
        return
    previous = {
        signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does (main thread only)."""
    if not _main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Demo:
    """One run of the demo (see the module docstring for the steps)."""

    def __init__(
        self, settings: Settings, options: DemoOptions, demo_id: str, folder: Path, echo: Echo
    ) -> None:
        self.settings = settings
        self.options = options
        self.demo_id = demo_id
        self.prefix = demo_id + "."
        self.folder = folder
        self.echo = echo
        self.summary: Summary | None = None
        #: Whether this demo started Kafka and PostgreSQL (and so stops them at the end).
        self.started_stack = False
        self.stop = threading.Event()
        self.children: Children | None = None
        self.observer: Observer | None = None
        self.workload: Workload | None = None
        self.sim_config: SimConfig | None = None
        self.ca_file = ""
        self.owners: list[str] = []
        self.sf: Salesforce | None = None
        self.counter = ApiCallCounter()
        self.origin = time.time()
        self.started = time.monotonic()
        self._last_progress = (0, self.started)
        self.report_path = (options.report or folder / "report.html").resolve()

    # -- the run -------------------------------------------------------------------------

    def run(self) -> int:
        """All steps; the exit code."""
        options = self.options
        self.echo(
            f"sfe demo {self.demo_id}: {options.duration:.0f} s of workload at "
            f"{options.rate:g} leads/s; logs and state in {self.folder}"
        )
        code = EXIT_OK
        series = Series()
        try:
            self._stack()
            self._models()
            self._topics()
            self._simulator()
            self._processes()
            stats = self._drive()
            drained, pending = self._drain(stats)
            series = self._collect(stats, drained, pending)
            if not drained:
                code = EXIT_FAILED
        except KeyboardInterrupt:
            self.echo("\ninterrupted: stopping the demo's processes")
            code = EXIT_INTERRUPTED
        except DemoError as exc:
            self.echo(f"sfe demo: {exc}")
            code = EXIT_FAILED
        except Exception as exc:
            self.echo(f"sfe demo failed: {type(exc).__name__}: {exc}")
            code = EXIT_FAILED
        finally:
            with _signals_ignored():
                self._finish(leave_running=options.keep_running and code == EXIT_OK)
        if self.summary is not None:
            self.summary.wall_s = time.monotonic() - self.started
            self.summary.report_path = str(self.report_path)
            for line in self.summary.lines():
                self.echo(line)
            try:
                write_html(self.report_path, self.summary, series)
                self.echo(f"Report            {self.report_path}")
            except Exception as exc:  # the summary stands without its plots
                self.echo(f"Report            not written: {type(exc).__name__}: {exc}")
            (self.folder / "summary.json").write_text(self.summary.to_json(), encoding="utf-8")
        return code

    def _client(self) -> Salesforce:
        if self.sf is None:
            raise DemoError("the workload client is not connected")
        return self.sf

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _stack(self) -> None:
        settings = self.settings
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line says it all
        if not all(status.running for status in local_stack.status(settings)):
            self.echo("starting the local stack (Kafka and PostgreSQL) ...")
            self.started_stack = True
            try:
                for status, _ in local_stack.up(settings):
                    self.echo(f"  {status.line()}")
            except local_stack.StackError as exc:
                raise DemoError(str(exc)) from None
        if settings.privacy_encryption and settings.privacy_master_key is None:
            ensure_local_master_key(settings)  # a stack started before it had none
        db.upgrade(settings)
        self.echo(f"database at revision {db.current_revision(settings)}")

    def _models(self) -> None:
        from ml.registry import Registry

        registry = Registry(self.settings.models_path)
        missing = [kind for kind in MODEL_KINDS if registry.promoted(kind) is None]
        if missing:
            self.echo(
                f"no promoted {', '.join(missing)} model in {registry.root}: training on "
                "synthetic CRM histories now (a minute or two) ..."
            )
        fresh = not any(registry.versions(kind) for kind in MODEL_KINDS)
        if missing and fresh:
            commands = [["train", "--all"]]  # first versions are promoted
        else:
            commands = [["train", "--model", kind, "--promote"] for kind in missing]
        log = self.folder / "train.log"
        for args in commands:
            began = time.monotonic()
            with log.open("ab") as handle:
                done = subprocess.run(
                    [sys.executable, "-m", "sfe.cli", *args],
                    env={**os.environ, "SFE_MODEL_DIR": str(registry.root.resolve())},
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if done.returncode != 0:
                raise DemoError(f"`sfe {' '.join(args)}` failed; see {log}")
            self.echo(f"  sfe {' '.join(args)}: done in {time.monotonic() - began:.0f} s")
        still = [kind for kind in MODEL_KINDS if registry.promoted(kind) is None]
        if still:
            raise DemoError(f"no promoted {', '.join(still)} model after training; see {log}")
        versions = ", ".join(f"{kind} v{registry.promoted(kind)}" for kind in MODEL_KINDS)
        self.echo(f"models: {versions} (registry {registry.root})")

    def _topics(self) -> None:
        from streams.topic_admin import TopicAdmin
        from streams.topics import catalogue

        reports = TopicAdmin(self.settings.kafka_bootstrap).ensure(catalogue(self.prefix))
        self.echo(f"topics: {len(reports)} under {self.prefix}")

    def _simulator(self) -> None:
        state = self.folder / "state"
        config = SimConfig(
            state_dir=state / "simulator",
            port=free_port(),
            api_version=self.settings.sf_api_version,
            sqlite_file=self.folder / "org.sqlite3",
        )
        id_base = int(time.time() * 1000) * 1000
        self.owners = seed_org(config, id_base)
        self.sim_config = config
        self.ca_file = str(config.state_dir / "ca.pem")

    def _env(self) -> dict[str, str]:
        config = self.sim_config
        assert config is not None
        settings = self.settings
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(
            PYTHONUNBUFFERED="1",
            SFE_STATE_DIR=str(self.folder / "state"),
            SFE_MODEL_DIR=str(settings.models_path.resolve()),
            SFE_TOPIC_PREFIX=self.prefix,
            SFE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            SFE_DATABASE_URL=settings.sqlalchemy_url(),
            SFE_SIM_HOST=config.host,
            SFE_SIM_PORT=str(config.port),
            SFE_SIM_SQLITE_FILE=str(config.sqlite_file),
            SFE_SF_LOGIN_URL=config.base_url,
            SFE_SF_CA_BUNDLE=self.ca_file,
            SFE_SF_CLIENT_ID=config.app.client_id,
            SFE_SF_CLIENT_SECRET=config.app.client_secret,
            SFE_SF_USERNAME=config.username,
            SFE_SF_PASSWORD=config.password,
            SFE_SF_API_VERSION=config.api_version,
            SFE_SINK_NAME=self.demo_id,
            SFE_METRICS_BIND=settings.metrics_bind,
            SFE_METRICS_PORT="0",
            SFE_LEAD_SENIOR_AE_QUEUE=",".join(self.owners),
        )
        configured = ("SFE_PRIVACY_MASTER_KEY", "SFE_PRIVACY_MASTER_KEY_FILE")
        if settings.privacy_encryption and not any(name in env for name in configured):
            # The processes' state folder is the demo's own: they seal personal data under
            # the local stack's master key.
            env["SFE_PRIVACY_MASTER_KEY_FILE"] = str(ensure_local_master_key(settings))
        return env

    def _sim_status(self) -> dict[str, object]:
        assert self.sim_config is not None
        response = requests.get(
            f"{self.sim_config.base_url}/_sim/status", verify=self.ca_file, timeout=5
        )
        response.raise_for_status()
        return dict(response.json())

    def _budget(self) -> Budget | None:
        try:
            usage = self._sim_status()["api_usage"]
        except (requests.RequestException, KeyError, ValueError):
            return None
        assert isinstance(usage, dict)
        return Budget(int(usage["used"]), int(usage["limit"]))

    def _processes(self) -> None:
        settings, demo_id = self.settings, self.demo_id
        children = Children(self.folder, self._env(), die_with_parent=not self.options.keep_running)
        self.children = children
        began = time.monotonic()
        children.start("simulator", ["sim", "serve"])
        children.wait_for("the org simulator", lambda: bool(self._sim_status()), 60)
        children.start(
            "ingest", ["ingest", "--start-at", "all", "--transactional-id", f"sfe-ingest.{demo_id}"]
        )
        worker_port = (
            settings.metrics_port
            if settings.metrics_port and port_is_free(settings.metrics_bind, settings.metrics_port)
            else 0
        )
        children.start("worker", ["worker", "--metrics-port", str(worker_port)])
        children.start("ecosystem", ["ecosystem", "respond"])
        children.start("sink", ["sink", "salesforce"])
        children.start("projection", ["projection", "run", "--name", demo_id])
        pids = ", ".join(f"{name} {pid}" for name, pid in children.pids().items())
        self.echo(f"org simulator at {self.sim_config.base_url if self.sim_config else '?'}; "
                  f"started (PID): {pids}")  # fmt: skip
        children.wait_for(
            "the ingestor to subscribe",
            lambda: int(str(self._sim_status()["streaming_clients"])) >= 1,
            90,
        )
        children.wait_for("the worker to be ready", lambda: self._ready("worker"), 180)
        for name in ("ingest", "sink", "projection"):
            child = children.get(name)
            children.wait_for(f"{name} to serve its metrics", child.metrics_url, 60)
        self.echo("metrics endpoints (a local Prometheus can scrape them):")
        for name, url in self._metrics_urls().items():
            self.echo(f"  {name:<11} {url}")
        self.echo(f"pipeline ready in {time.monotonic() - began:.0f} s")

    def _metrics_urls(self) -> dict[str, str]:
        if self.children is None:
            return {}
        urls = {}
        for child in self.children.started:
            url = child.metrics_url()
            if url:
                urls[child.name] = url
        return urls

    def _ready(self, name: str) -> bool:
        assert self.children is not None
        url = self.children.get(name).metrics_url()
        if not url:
            return False
        response = requests.get(url.removesuffix("/metrics") + "/readyz", timeout=2)
        return response.status_code == 200

    def _run_churn(self) -> ChurnResult:
        """``sfe churn run`` (the daily churn and upsell batch, now) and what it reported."""
        assert self.children is not None
        code, output = self.children.run_once("churn", ["churn", "run"], timeout=300)
        match = re.search(_CHURN_OUTPUT, output)
        if code != 0 or match is None:
            raise DemoError(f"sfe churn run failed (code {code}); see {self.folder / 'churn.log'}")
        assessed, high, upsell = (int(g) for g in match.groups())
        line = next((ln for ln in output.splitlines() if ln.startswith("churn batch")), "")
        return ChurnResult(assessed, high, upsell, line.strip())

    def _drive(self) -> WorkloadStats:
        assert self.sim_config is not None and self.children is not None
        children = self.children
        sf, counter = connect_counted(auth_config(self.sim_config, self.ca_file))
        self.sf, self.counter = sf, counter
        observer = Observer(self.settings.kafka_bootstrap, self.prefix, self.origin)
        observer.start()
        self.observer = observer
        plan = Plan.for_run(self.options.duration, self.options.rate, self.options.seed)
        workload = Workload(
            sf,
            plan,
            self.owners,
            lambda signals: append_signals(self.settings.kafka_bootstrap, self.prefix, signals),
            self._run_churn,
            self.stop,
            self.origin,
        )
        self.workload = workload
        self.echo(
            f"driving the workload for {plan.duration:.0f} s: {plan.accounts} accounts with "
            f"{plan.opportunities} opportunities and 30 days of usage, about "
            f"{plan.expected_leads():,} leads at {plan.rate / 2:g}, {plan.rate:g} and "
            f"{plan.rate * 2:g} per second, stage changes, {plan.closed_won} deals won, "
            f"the churn batch at {plan.churn_at:.0f} s"
        )
        self._last_progress = (0, time.monotonic())
        workload.start()
        while workload.is_alive():
            workload.join(PROGRESS_SECONDS)
            children.check()
            if workload.error is not None:
                break
            self._progress("churn batch" if workload.stats.changes_done else "workload")
        if workload.error is not None:
            error = workload.error
            raise DemoError(f"the workload failed: {type(error).__name__}: {error}")
        stats = workload.stats
        churn = stats.churn
        self.echo(
            f"workload done: {len(stats.lead_ids):,} leads, {len(stats.opportunity_ids):,} "
            f"opportunities ({stats.stage_changes:,} stage changes, {len(stats.won_ids)} won), "
            f"{len(stats.account_ids):,} accounts with {stats.usage_signals:,} usage signals"
            + (f"; {churn.output}" if churn else "")
        )
        return stats

    def _progress(self, phase: str, note: str = "") -> None:
        """Print the progress line (events per second since the previous line)."""
        assert self.observer is not None and self.workload is not None
        seen = self.observer.observed()
        now = time.monotonic()
        last_records, last_time = self._last_progress
        rate = (seen.records - last_records) / max(1e-6, now - last_time)
        self._last_progress = (seen.records, now)
        line = progress_line(
            self._elapsed(), phase, self.workload.stats.count_leads(), seen, rate, self._budget()
        )
        self.echo(line + (f" | waiting for {note}" if note else ""))

    def _pending(self, stats: WorkloadStats, org: OrgFacts, rm: ReadModelFacts) -> list[str]:
        """What the org and the read models do not hold yet (empty: drained)."""
        pending: list[str] = []
        leads, won = len(stats.lead_ids), len(stats.won_ids)

        def short(have: int, want: int, what: str) -> None:
            if have < want:
                pending.append(f"{want - have:,} {what}")

        short(org.scored, leads, "leads scored in Salesforce")
        short(org.onboarding_completed + org.onboarding_failed, won, "onboarding sagas")
        churn = stats.churn
        if churn is None:
            pending.append("the churn batch")
        else:
            short(org.accounts_assessed, churn.assessed, "accounts' churn risk in Salesforce")
            short(org.churn_cases, churn.high_risk, "churn cases")
            short(org.upsell_tasks, churn.upsell_candidates, "upsell tasks")
            short(rm.predictions("churn"), churn.assessed, "churn predictions in PostgreSQL")
        short(rm.predictions("lead_score"), leads, "lead predictions in PostgreSQL")
        short(rm.run_count("opportunity_insights"), stats.insights_expected, "insight runs")
        short(
            rm.run_count("onboarding", "COMPLETED", "FAILED"), won, "onboarding runs in PostgreSQL"
        )
        short(rm.run_count("retention"), org.at_risk_tasks, "retention runs in PostgreSQL")
        short(org.at_risk_tasks, rm.run_count("retention"), "at-risk tasks in Salesforce")
        short(rm.sync_log_rows, rm.writes, "sync_log rows")
        return pending

    def _record_ids(self, stats: WorkloadStats) -> list[str]:
        with stats.lock:
            return [*stats.lead_ids, *stats.opportunity_ids, *stats.account_ids]

    def _drain(self, stats: WorkloadStats) -> tuple[bool, list[str]]:
        assert self.children is not None
        timeout = self.options.drain_timeout or max(120.0, self.options.duration)
        engine = create_engine(self.settings.sqlalchemy_url())
        began = time.monotonic()
        deadline = began + timeout
        settled = 0
        pending: list[str] = []
        ids = self._record_ids(stats)
        try:
            while True:
                self.children.check()
                org = org_facts(self._client())
                rm = read_model_facts(engine, self.demo_id, ids)
                pending = self._pending(stats, org, rm)
                settled = settled + 1 if not pending else 0
                if settled >= 2:
                    self.echo(
                        f"pipeline drained {time.monotonic() - began:.0f} s after the workload"
                    )
                    return True, []
                if time.monotonic() > deadline:
                    self.echo(f"the pipeline did not drain within {timeout:.0f} s")
                    return False, pending
                self._progress("draining", "; ".join(pending) or "a last check")
                time.sleep(PROGRESS_SECONDS)
        finally:
            engine.dispose()

    def _sink_calls(self) -> int | None:
        assert self.children is not None
        url = self.children.get("sink").metrics_url()
        if url is None:
            return None
        try:
            text = requests.get(url, timeout=5).text
        except requests.RequestException:
            return None
        total = 0.0
        for family in text_string_to_metric_families(text):
            if family.name == "sfe_salesforce_api_calls":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return int(total)

    def _collect(self, stats: WorkloadStats, drained: bool, pending: list[str]) -> Series:
        """Read the summary back from the org and PostgreSQL (processes still running)."""
        assert self.observer is not None
        engine = create_engine(self.settings.sqlalchemy_url())
        try:
            org = org_facts(self._client())
            rm = read_model_facts(engine, self.demo_id, self._record_ids(stats))
        finally:
            engine.dispose()
        budget = self._budget()
        demo_calls = self.counter.calls
        seen = self.observer.observed()
        churn = stats.churn
        summary = Summary(
            demo_id=self.demo_id,
            topic_prefix=self.prefix,
            folder=str(self.folder),
            duration_s=self.options.duration,
            rate=self.options.rate,
            leads_created=len(stats.lead_ids),
            leads_scored=org.leads_scored,
            opportunities_created=len(stats.opportunity_ids),
            stage_changes=stats.stage_changes,
            closed_won=len(stats.won_ids),
            opportunities_at_risk=org.opportunities_at_risk,
            onboarding_completed=org.onboarding_completed,
            onboarding_failed=org.onboarding_failed,
            accounts_onboarded=org.accounts_onboarded,
            accounts_created=len(stats.account_ids),
            usage_signals=stats.usage_signals,
            accounts_assessed=org.accounts_assessed,
            churn_cases=org.churn_cases,
            upsell_candidates=org.upsell_tasks,
            api_calls_total=budget.used if budget else 0,
            api_calls_demo=demo_calls,
            api_calls_pipeline=(budget.used - demo_calls) if budget else 0,
            api_calls_sink=self._sink_calls(),
            salesforce_writes=rm.writes,
            writes_by_outcome=dict(rm.commands),
            latency_e2e=Percentiles.of(org.lead_latencies),
            latency_decision=Percentiles.of(seen.decision_latencies),
            events_total=seen.records,
            events_peak_per_second=peak(seen.records_per_second),
            predictions_by_type={k: len(v) for k, v in rm.probabilities.items()},
            runs_by_workflow={w: sum(s.values()) for w, s in rm.runs.items()},
            sync_log_rows=rm.sync_log_rows,
            drained=drained,
            pending=pending,
            pids=self.children.pids() if self.children else {},
            metrics_urls=self._metrics_urls(),
        )
        if rm.writes:
            summary.api_calls_per_1000_updates = 1000.0 * summary.api_calls_pipeline / rm.writes
        if churn is not None and churn.high_risk != org.churn_cases:
            summary.pending.append(
                f"churn run reported {churn.high_risk} high-risk accounts, org holds "
                f"{org.churn_cases} cases"
            )
        self.summary = summary
        return Series(
            lead_latencies=org.lead_latencies,
            decision_latencies=seen.decision_latencies,
            probabilities=rm.probabilities,
            throughput={
                "events appended (all topics)": seen.records_per_second,
                "leads created": stats.leads_per_second,
                "lead decisions": seen.lead_decisions_per_second,
                "Salesforce writes applied": seen.writes_per_second,
            },
        )

    # -- the end -------------------------------------------------------------------------

    def _finish(self, leave_running: bool) -> None:
        self.stop.set()
        if self.workload is not None:
            self.workload.join(30)
        if self.observer is not None:
            self.observer.close()
        children = self.children
        if children is not None and children.started:
            if leave_running:
                self._left_running(children)
            else:
                killed = children.stop_all()
                names = ", ".join(c.name for c in children.started)
                note = f" ({', '.join(killed)} had to be killed)" if killed else ""
                self.echo(f"stopped the demo's processes: {names}{note}")
        if not (self.options.keep_topics or leave_running):
            try:
                deleted = _delete_topics(self.settings.kafka_bootstrap, self.prefix)
            except Exception as exc:  # the broker may be what failed
                self.echo(f"could not delete the topics under {self.prefix}: {exc}")
            else:
                if deleted:
                    self.echo(f"deleted the demo's {deleted} topics (--keep-topics keeps them)")
        if self.started_stack and not leave_running:
            for name, _stopped in local_stack.down(self.settings):
                self.echo(f"stopped {name}, which this demo started")

    def _left_running(self, children: Children) -> None:
        pids = children.pids()
        self.echo("left running (--keep-running):")
        for name, pid in pids.items():
            url = children.get(name).metrics_url()
            self.echo(f"  {name:<11} PID {pid:<8} {url or ''}")
        targets = ", ".join(
            f"'{url.removeprefix('http://').removesuffix('/metrics')}'"
            for url in self._metrics_urls().values()
        )
        self.echo(f"  Prometheus scrape targets: [{targets}]")
        self.echo(f"  stop them with: kill {' '.join(str(pid) for pid in pids.values())}")
        exports = " ".join(f"{key}={children.env[key]}" for key in _EXPORTED)
        self.echo(f"  talk to the org: export {exports}")
        # `sfe sim load` names itself with SFE_SF_CALL_OPTIONS_CLIENT, the pipeline's own
        # client name by default, and its changes would be taken for echoes.
        self.echo(
            "  then, e.g.: SFE_SF_CALL_OPTIONS_CLIENT=explorer sfe sim load --leads 100 "
            "--opportunities 10 --accounts 5"
        )
        (self.folder / "pids").write_text(
            "".join(f"{name} {pid}\n" for name, pid in pids.items()), encoding="utf-8"
        )


def _delete_topics(bootstrap: str, prefix: str) -> int:
    """Delete every topic under ``prefix`` (the catalogue's and the worker's own)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    names = [name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=60)
    return len(names)
