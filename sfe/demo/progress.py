"""Live view of the demo: a read-committed consumer of the demo's topics and the progress line.

:class:`Observer` reads every catalogue topic under the demo's prefix from the start
(``isolation.level=read_committed``, a group of its own, no commits) and keeps counts:
records per second (the throughput), lead decisions by route with their decision
latency (the record's append time minus the decision's time, which is the lead's CDC
commit time), onboarding plans and their ends, at-risk opportunities and Salesforce
write results. :func:`progress_line` renders one plain-text line of it (no terminal
control codes, so CI logs read well).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message

from schema_registry.codec import Codec
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    LeadScored,
    OnboardingPlanned,
    OpportunityInsightsComputed,
    WorkflowAdvanced,
)
from sfe.kafka_security import client_config
from streams.topics import catalogue

log = logging.getLogger(__name__)

#: Topics whose records the observer decodes (the others it only counts).
DECODED = (
    "decisions.leads",
    "decisions.onboarding",
    "decisions.opportunities",
    "workflow.events",
    "command.results",
)
ROUTE_LABELS = {"SENIOR_AE": "Senior AE", "NURTURE": "Nurture", "MQL": "MQL"}
_ENDED = frozenset({"COMPLETED", "FAILED"})


@dataclass
class Observed:
    """What the observer has seen so far (a copy; safe to read while it runs)."""

    records: int = 0
    records_per_second: Counter[int] = field(default_factory=Counter)
    leads_by_route: Counter[str] = field(default_factory=Counter)
    lead_decisions_per_second: Counter[int] = field(default_factory=Counter)
    decision_latencies: list[float] = field(default_factory=list)
    onboarding_planned: set[str] = field(default_factory=set)
    onboarding_ended: dict[str, str] = field(default_factory=dict)
    at_risk: set[str] = field(default_factory=set)
    writes_applied: int = 0
    writes_per_second: Counter[int] = field(default_factory=Counter)

    @property
    def leads_scored(self) -> int:
        """Lead decisions seen."""
        return sum(self.leads_by_route.values())

    @property
    def sagas_in_flight(self) -> int:
        """Onboarding sagas planned and not yet completed or failed."""
        return len(self.onboarding_planned - set(self.onboarding_ended))

    def copy(self) -> Observed:
        """A snapshot of the counts."""
        return Observed(
            self.records,
            Counter(self.records_per_second),
            Counter(self.leads_by_route),
            Counter(self.lead_decisions_per_second),
            list(self.decision_latencies),
            set(self.onboarding_planned),
            dict(self.onboarding_ended),
            set(self.at_risk),
            self.writes_applied,
            Counter(self.writes_per_second),
        )


class Observer(threading.Thread):
    """Reads the demo's topics in the background; :meth:`observed` gives the counts."""

    def __init__(self, bootstrap: str, prefix: str, origin: float) -> None:
        """Observe the topics under ``prefix``; seconds count from ``origin`` (epoch seconds)."""
        super().__init__(name="demo-observer", daemon=True)
        self.prefix = prefix
        self.origin = origin
        self.codec = Codec(topic_prefix=prefix)
        self.topics = [topic.name for topic in catalogue(prefix)]
        self.consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": f"{prefix}sfe.demo.observer.{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._seen = Observed()
        self.error: BaseException | None = None

    def observed(self) -> Observed:
        """A copy of the counts so far."""
        with self._lock:
            return self._seen.copy()

    def close(self) -> None:
        """Stop reading and leave the group."""
        self._halt.set()
        if self.is_alive():
            self.join(10)

    def run(self) -> None:
        """Consume until :meth:`close`."""
        try:
            self.consumer.subscribe(self.topics)
            while not self._halt.is_set():
                messages = self.consumer.consume(1000, 0.5)
                with self._lock:
                    for message in messages:
                        self._take(message)
        except BaseException as exc:  # shown by the orchestrator; the demo goes on without it
            log.exception("observer failed")
            self.error = exc
        finally:
            self.consumer.close()

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("observer: %s", error)
            return
        seen = self._seen
        _, stamp_ms = message.timestamp()
        appended = stamp_ms / 1000.0
        second = int(appended - self.origin)
        seen.records += 1
        seen.records_per_second[second] += 1
        topic = str(message.topic())
        name = topic.removeprefix(self.prefix)
        if name not in DECODED:
            return
        try:
            event = self.codec.decode(topic, message.value(), _headers(message))
        except Exception:
            return  # the pipeline dead-letters what it cannot read; the view skips it
        if isinstance(event, LeadScored):
            seen.leads_by_route[ROUTE_LABELS.get(event.route.value, event.route.value)] += 1
            seen.lead_decisions_per_second[second] += 1
            seen.decision_latencies.append(max(0.0, appended - event.time.timestamp()))
        elif isinstance(event, OnboardingPlanned):
            seen.onboarding_planned.add(event.opportunity_id)
        elif isinstance(event, WorkflowAdvanced):
            if event.workflow == "onboarding" and event.to_state.upper() in _ENDED:
                opportunity = event.attributes.get("record_id") or event.subject
                seen.onboarding_ended[opportunity] = event.to_state.upper()
        elif isinstance(event, OpportunityInsightsComputed):
            if event.at_risk:
                seen.at_risk.add(event.subject)
        elif isinstance(event, CommandExecuted) and event.outcome is CommandOutcome.APPLIED:
            seen.writes_applied += 1
            seen.writes_per_second[second] += 1


@dataclass(frozen=True)
class Budget:
    """The org's API usage as the simulator reports it."""

    used: int
    limit: int


def progress_line(
    elapsed: float,
    phase: str,
    leads_created: int,
    seen: Observed,
    events_per_second: float,
    budget: Budget | None,
) -> str:
    """One line of progress: time, leads, bands, throughput, sagas, at-risk deals, API use."""
    bands = " · ".join(
        f"{label} {seen.leads_by_route.get(label, 0):,}" for label in ROUTE_LABELS.values()
    )
    api = f"API {budget.used:,}/{budget.limit:,}" if budget else "API ?"
    done = len(seen.onboarding_ended)
    return (
        f"[{elapsed:5.0f}s {phase}] leads {leads_created:,} created, {seen.leads_scored:,} scored "
        f"({bands}) | {events_per_second:,.0f} events/s | sagas in flight "
        f"{seen.sagas_in_flight} ({done} done) | at risk {len(seen.at_risk)} | {api}"
    )


def _headers(message: Message) -> list[tuple[str, bytes]]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(name), _bytes(value)) for name, value in pairs]


def _bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value
