"""The soak: the demo's pipeline under the demo's workload, with faults, then strict checks.

:class:`Soak` is a :class:`~sfe.demo.orchestrator.Demo` with four differences:

1. its Kafka broker and PostgreSQL cluster are its own (:class:`PrivateStack`, free
   ports, a temporary folder), because it restarts them;
2. its children are :class:`~sfe.reliability.faults.Supervised` (started again when
   they exit) once the pipeline is up;
3. while the workload runs, a :class:`~sfe.reliability.faults.FaultInjector` injects
   faults (none while the churn batch runs, which is part of the workload);
4. once drained, :mod:`sfe.reliability.checks` compares the org, the log, the read
   models and the sink's memory, and the verdict decides the exit code.

The workload's own calls are never failed on purpose: Salesforce faults target the
pipeline's client name only (``fail_next`` with ``client``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from schema_registry.events import RecordChanged
from sfe.demo.orchestrator import EXIT_FAILED, EXIT_OK, Demo, DemoOptions, interrupts_raise
from sfe.demo.report import Series
from sfe.demo.workload import ChurnResult, WorkloadStats
from sfe.privacy.setup import privacy_from
from sfe.reliability import checks
from sfe.reliability.faults import (
    FAULT_KINDS,
    PIPELINE_CLIENT,
    FaultInjector,
    Org,
    Supervised,
)
from sfe.reliability.stack import PrivateStack
from sfe.settings import Settings
from streams.ingest.service import DEFAULT_CHANNELS

DECISION_TOPICS = (
    "decisions.leads",
    "decisions.opportunities",
    "decisions.onboarding",
    "decisions.churn",
    "decisions.upsell",
)
CDC_TOPICS = tuple(f"sf.cdc.{name}" for name in ("Lead", "Contact", "Account", "Opportunity",
                                                 "Case", "Task"))  # fmt: skip
#: The ingestor's log messages of each recovery (``streams/ingest/service.py``).
INGEST_RECOVERY_LOGS = {
    "replay_expired": "stored replay id expired",
    "window_reconciled": "missed window reconciled",
    "connection_lost": "streaming connection lost",
    "append_failed": "append to Kafka failed",
}
#: Unasked-for exits of one service that make a crash loop (an error in the verdict).
CRASH_LOOP = 5
#: Seconds the checks wait for the ingestor to append the last changes after the drain.
SETTLE_SECONDS = 90.0
#: Faust settings of the soak's worker (read from its environment).
WORKER_SESSION_TIMEOUT_SECONDS = 10
#: An onboarding step without a result is retried after this long (120 s by default):
#: a provisioning request or result lost to a kill is sent again within the drain time.
ONBOARDING_STEP_TIMEOUT_SECONDS = 30
WORKER_HEARTBEAT_SECONDS = 2
OTHER_TOPICS = ("commands.salesforce", "command.results", "predictions", "workflow.events")


@dataclass(frozen=True)
class SoakOptions:
    """How long, how fast, which faults and how often."""

    seconds: float = 120.0
    rate: float = 4.0
    faults: tuple[str, ...] = FAULT_KINDS
    #: Seconds between two faults.
    interval: float = 12.0
    seed: int = 7
    drain_timeout: float = 300.0
    #: Seal personal fields at rest (``SFE_PRIVACY_ENCRYPTION``), as production does.
    privacy_encryption: bool = True


@dataclass
class SoakVerdict:
    """The soak's figures: faults, events, and every check."""

    soak_id: str
    seconds: float
    faults: dict[str, int]
    restarts: dict[str, int]
    events: int
    leads: int
    changes: int
    decisions: int
    commands: int
    checks: list[checks.Check] = field(default_factory=list)
    drained: bool = False
    recoveries: dict[str, int] = field(default_factory=dict)
    #: Pipeline API calls failed by the Salesforce faults (5xx, REQUEST_LIMIT_EXCEEDED).
    failed_calls: int = 0
    #: Snapshot records in ``sf.cdc.*`` (appended when the ingestor re-reads records).
    snapshots: int = 0
    errors: list[str] = field(default_factory=list)
    #: Exits of services nobody asked for, by service and last error line.
    crashes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The PIDs of the services and of the private broker and PostgreSQL (last ones).
    pids: dict[str, int] = field(default_factory=dict)
    stack_pids: dict[str, int] = field(default_factory=dict)
    stack_root: str = ""

    @property
    def lost(self) -> int:
        """Items lost over every check."""
        return sum(check.lost for check in self.checks)

    @property
    def duplicated(self) -> int:
        """Items duplicated (or written redundantly) over every check."""
        return sum(check.duplicated for check in self.checks)

    @property
    def unexpected(self) -> int:
        """Items found that nothing asked for."""
        return sum(check.unexpected for check in self.checks)

    @property
    def redundant_writes(self) -> int:
        """Pipeline writes to the org that changed nothing."""
        return sum(c.duplicated for c in self.checks if c.name.startswith("pipeline writes"))

    @property
    def resent_writes(self) -> int:
        """Writes the sink sent again after a fault interrupted it before its commit."""
        return sum(c.redelivered for c in self.checks if c.name.startswith("pipeline writes"))

    @property
    def ok(self) -> bool:
        """Drained, every check passed, no error."""
        return (
            self.drained
            and bool(self.checks)
            and all(check.ok for check in self.checks)
            and not self.errors
        )

    def lines(self) -> list[str]:
        """The final summary."""
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        restarts = ", ".join(f"{k} {v}" for k, v in sorted(self.restarts.items())) or "none"
        out = [
            "",
            f"Soak {self.soak_id}: {self.seconds:.0f} s of workload",
            f"Faults injected   {sum(self.faults.values())} ({faults})",
            f"Process restarts  {sum(self.restarts.values())} ({restarts})",
            f"Events processed  {self.events:,} records appended; {self.changes:,} org "
            f"changes, {self.leads:,} leads, {self.decisions:,} decisions, "
            f"{self.commands:,} Salesforce commands",
        ]
        out.append(f"Salesforce faults {self.failed_calls} pipeline API calls failed (5xx, limit)")
        if self.recoveries:
            rec = ", ".join(f"{k} {v}" for k, v in sorted(self.recoveries.items()))
            out.append(f"Ingest recoveries {rec}")
        for name, reasons in sorted(self.crashes.items()):
            for reason, times in sorted(reasons.items(), key=lambda pair: -pair[1]):
                out.append(f"Crashed           {name} x{times}: {reason}")
        width = max((len(check.name) for check in self.checks), default=0)
        out += ["Checks"] + [f"  {check.line(width)}" for check in self.checks]
        out += [f"  error: {error}" for error in self.errors]
        if not self.drained:
            out.append("  the pipeline did not drain")
        out.append(
            f"Lost {self.lost}  duplicated {self.duplicated}  unexpected {self.unexpected}  "
            f"redundant writes {self.redundant_writes} (re-sent after an interrupted sink batch: "
            f"{self.resent_writes})  => {'PASS' if self.ok else 'FAIL'}"
        )
        return out

    def to_json(self) -> str:
        """The verdict as JSON (written next to the logs)."""
        data = asdict(self)
        data.update(
            lost=self.lost,
            duplicated=self.duplicated,
            redundant_writes=self.redundant_writes,
            resent_writes=self.resent_writes,
            ok=self.ok,
        )
        return json.dumps(data, indent=2, default=str)


class Soak(Demo):
    """One soak run (see the module docstring)."""

    def __init__(
        self,
        base: Settings,
        options: SoakOptions,
        folder: Path,
        echo: Any = print,
    ) -> None:
        """Prepare the private stack; nothing runs before :meth:`run`."""
        self.soak_options = options
        self.private = PrivateStack(base)
        soak_id = folder.name
        demo_options = DemoOptions(
            duration=options.seconds,
            rate=options.rate,
            keep_topics=True,  # the whole broker goes away at the end
            seed=options.seed,
            drain_timeout=options.drain_timeout,
        )
        super().__init__(self.private.settings, demo_options, soak_id, folder, echo)
        self.injector: FaultInjector | None = None
        self.verdict: SoakVerdict | None = None
        #: The org's events as copied before each purge (replay-id expiry).
        self.kept_events: dict[tuple[str, int], tuple[str, int, str, str]] = {}
        self.purged: set[tuple[str, int]] = set()
        self._events_lock = threading.Lock()

    # -- the demo's steps, changed --------------------------------------------------------

    def run(self) -> int:
        """The demo's run, then the verdict; non-zero unless everything checked out."""
        code = super().run()
        verdict = self.verdict
        if verdict is not None:
            for line in verdict.lines():
                self.echo(line)
            (self.folder / "verdict.json").write_text(verdict.to_json(), encoding="utf-8")
        if code == EXIT_OK and (verdict is None or not verdict.ok):
            code = EXIT_FAILED
        return code

    def _stack(self) -> None:
        self.echo(f"starting the soak's own broker and PostgreSQL in {self.private.root} ...")
        self.private.start()
        self.echo(
            f"  kafka {self.settings.kafka_bootstrap}, postgres "
            f"127.0.0.1:{self.private.cluster.port} (PIDs {self.private.pids()})"
        )

    def _env(self) -> dict[str, str]:
        env = super()._env()
        # The worker (Faust) keeps a killed member's partitions for its session timeout
        # (60 s by default) before the group rebalances; the soak kills it often.
        env.setdefault("BROKER_SESSION_TIMEOUT", str(WORKER_SESSION_TIMEOUT_SECONDS))
        env.setdefault("BROKER_HEARTBEAT_INTERVAL", str(WORKER_HEARTBEAT_SECONDS))
        env.setdefault("SFE_ONBOARDING_STEP_TIMEOUT_SECONDS", str(ONBOARDING_STEP_TIMEOUT_SECONDS))
        if not self.soak_options.privacy_encryption:
            env["SFE_PRIVACY_ENCRYPTION"] = "false"
        return env

    def _processes(self) -> None:
        super()._processes()
        assert self.children is not None
        self.children = Supervised.adopt(self.children)

    def _org(self) -> Org:
        config = self.sim_config
        assert config is not None and config.sqlite_file is not None
        return Org(config.base_url, self.ca_file, config.sqlite_file)

    def _keep_events(self) -> None:
        """Copy the org's retained events (new ones only)."""
        with self._events_lock:
            for event in self._org().events():
                self.kept_events.setdefault((event[0], event[1]), event)

    def _before_purge(self) -> None:
        """Copy the org's retained events and remember them as purged."""
        self._keep_events()
        with self._events_lock:
            self.purged = set(self.kept_events)

    def _drive(self) -> WorkloadStats:
        assert isinstance(self.children, Supervised)
        options = self.soak_options
        injector = FaultInjector(
            options.faults,
            options.interval,
            self.children,
            self.private,
            self._org(),
            self._before_purge,
            self.stop,
            self.echo,
        )
        self.injector = injector
        injector.start()
        try:
            return super()._drive()
        finally:
            self.stop.set()  # ends the injection; the workload has returned already
            injector.join(120)
            self.stop.clear()
            with injector.quiet:
                injector.disarm()
            if injector.error is not None:
                self.echo(f"fault injection stopped early: {injector.error!r}")
            self.echo(f"faults injected: {dict(injector.counts())}")

    def _run_churn(self) -> ChurnResult:
        if self.injector is None:
            return super()._run_churn()
        with self.injector.quiet:  # the batch is the workload's, not the pipeline under test
            self.injector.disarm()
            return super()._run_churn()

    def _collect(self, stats: WorkloadStats, drained: bool, pending: list[str]) -> Series:
        series = super()._collect(stats, drained, pending)
        try:
            self.verdict = self._verify(stats, drained)
        except Exception as exc:
            self.echo(f"the checks failed to run: {type(exc).__name__}: {exc}")
            self.verdict = None
        return series

    def _finish(self, leave_running: bool) -> None:
        try:
            super()._finish(leave_running=False)
        finally:
            self.private.stop(remove=True)
            self.echo(f"stopped the soak's broker and PostgreSQL; logs in {self.folder}")

    # -- the checks -----------------------------------------------------------------------

    def _recoveries(self) -> dict[str, int]:
        """The ingestor's recoveries, counted from its log (all its lives: one log file)."""
        assert self.children is not None
        text = self.children.get("ingest").log.read_text(errors="replace")
        counts = {kind: text.count(message) for kind, message in INGEST_RECOVERY_LOGS.items()}
        return {kind: n for kind, n in counts.items() if n}

    def _verify(self, stats: WorkloadStats, drained: bool) -> SoakVerdict:
        org = self._org()
        self._keep_events()
        with self._events_lock:
            published = checks.org_changes(self.kept_events.values(), DEFAULT_CHANNELS)
            purged = {i: c for i, c in published.items() if (c.stream, c.replay_id) in self.purged}
        # The drain waits for the org and the read models; the ingestor may still be
        # appending the echoes of the last writes: give it a bounded while.
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            cdc_log = checks.read_log(self.settings.kafka_bootstrap, self.prefix, CDC_TOPICS)
            cdc = [entry for topic in CDC_TOPICS for entry in cdc_log[topic]]
            changes = checks.check_changes(published, cdc, purged)
            if changes.lost == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        names = (*DECISION_TOPICS, *OTHER_TOPICS)
        log = checks.read_log(self.settings.kafka_bootstrap, self.prefix, names)
        decisions = [entry for topic in DECISION_TOPICS for entry in log[topic]]
        found: list[checks.Check] = [changes]
        churn = stats.churn
        found += checks.check_decisions(
            decisions,
            list(stats.lead_ids),
            cdc_log["sf.cdc.Opportunity"],
            list(stats.won_ids),
            churn.assessed if churn else None,
        )
        engine = create_engine(self.settings.sqlalchemy_url())
        try:
            found += checks.check_projections(engine, log, self.demo_id)
            privacy = (
                privacy_from(self.settings.model_copy(update={"topic_prefix": self.prefix}), engine)
                if self.soak_options.privacy_encryption
                else None
            )
            found += checks.check_fields(
                self._client(),
                engine,
                log,
                self.demo_id,
                self.settings.sink_create_key_field,
                privacy,
            )
        finally:
            engine.dispose()
        injector = self.injector
        interruptions = sum(
            1
            for fault in (injector.injected if injector else [])
            if fault.kind in ("postgres_restart", "broker_restart")
            or (fault.kind == "service_kill" and "SIGKILL sink " in fault.detail)
        )
        found.append(checks.check_redundant_writes(org.status(), PIPELINE_CLIENT, interruptions))
        errors = []
        if injector is not None and injector.error is not None:
            errors.append(f"fault injection stopped early: {injector.error!r}")
        crashes: dict[str, Counter[str]] = {}
        if isinstance(self.children, Supervised):
            for name, code, error in self.children.crashes:
                crashes.setdefault(name, Counter())[error or f"exit code {code}"] += 1
        for name, reasons in crashes.items():
            if sum(reasons.values()) >= CRASH_LOOP:
                reason, times = reasons.most_common(1)[0]
                errors.append(
                    f"{name} crashed {sum(reasons.values())} times (a crash loop); "
                    f"{times} times with: {reason}"
                )
        observed = self.observer.observed().records if self.observer else 0
        supervised = self.children
        return SoakVerdict(
            soak_id=self.demo_id,
            seconds=self.soak_options.seconds,
            faults=dict(injector.counts()) if injector else {},
            restarts=dict(supervised.restarts) if isinstance(supervised, Supervised) else {},
            events=observed,
            leads=len(stats.lead_ids),
            changes=len(published),
            decisions=len(decisions),
            commands=len(log["commands.salesforce"]),
            checks=found,
            drained=drained,
            recoveries=self._recoveries(),
            failed_calls=injector.failed_calls if injector else 0,
            snapshots=sum(
                1 for e in cdc if isinstance(e.event, RecordChanged) and e.event.is_snapshot
            ),
            errors=errors,
            crashes={name: dict(reasons) for name, reasons in crashes.items()},
            pids=supervised.pids() if supervised else {},
            stack_pids={k: v for k, v in self.private.pids().items() if v is not None},
            stack_root=str(self.private.root),
        )


def new_soak_folder(state_dir: Path) -> Path:
    """``<state dir>/soak/soak-<yyyymmddHHMMSS>`` (with a suffix if taken), created."""
    base = "soak-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    root = (state_dir / "soak").resolve()
    candidate, n = root / base, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{base}-{n}"
    candidate.mkdir(parents=True)
    return candidate


@dataclass
class SoakResult:
    """How a soak ended."""

    exit_code: int
    folder: Path
    verdict: SoakVerdict | None
    elapsed: float = 0.0


def run_soak(settings: Settings, options: SoakOptions, echo: Any = print) -> SoakResult:
    """Run one soak; every process and the private stack are stopped at the end."""
    began = time.monotonic()
    folder = new_soak_folder(settings.state_dir)
    soak = Soak(settings, options, folder, echo)
    with interrupts_raise():
        code = soak.run()
    return SoakResult(code, folder, soak.verdict, time.monotonic() - began)
