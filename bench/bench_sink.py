"""API calls the Salesforce sink spends per 10,000 field updates (Collections or Bulk 2.0).

Starts the org simulator in-process, creates 2,000 leads, and sends the sink 10,000
AI-field updates in two shapes: 2,000 commands of five fields, and 10,000 commands of
one field (five per lead, merged by the sink). Each shape is then sent again with the
same command ids (a replay) and once more with new ids and the same values (already
current). The simulator counts the calls, as Salesforce would bill them. Needs the
local stack (``sfe stack up && sfe db upgrade``); topics go under a fresh prefix.

Usage: ``.venv/bin/python bench/bench_sink.py [--leads 2000] [--bulk-threshold N]
[--batch-size N]``: with a threshold, updates of a batch's record group at least that
large go through a Bulk API 2.0 job. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, create_engine

from projections.runner import ProjectionRunner
from projections.salesforce.writer import ApiBudget, BudgetSettings, CollectionsWriter
from projections.salesforce_sink import SalesforceSink, run_sink
from schema_registry.codec import Codec
from schema_registry.events import SalesforceOperation, SalesforceWriteRequested
from sfe.settings import Settings, load_settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect
from streams.topic_admin import TopicAdmin
from streams.topics import catalogue


def auth_for(sim: RunningSimulator) -> SalesforceAuthConfig:
    """Password-flow login to the in-process simulator."""
    return sim.client_config()


def commands_for(leads: list[str], fields_per_command: int) -> list[SalesforceWriteRequested]:
    """Five AI fields per lead, split into commands of ``fields_per_command`` fields."""
    out = []
    for i, lead in enumerate(leads):
        values: list[tuple[str, Any]] = [
            ("AI_Enhanced_Score__c", i % 101),
            ("AI_Reasoning__c", f"reason {i}"),
            ("Company_Intelligence__c", f'{{"rank": {i}}}'),
            ("Estimated_Budget__c", 500.0 * (i % 40)),
            ("Decision_Makers__c", f"CTO {i}"),
        ]
        for start in range(0, len(values), fields_per_command):
            out.append(
                SalesforceWriteRequested(
                    id=str(uuid.uuid4()),
                    source="bench",
                    subject=lead,
                    time=datetime.now(UTC),
                    operation=SalesforceOperation.UPDATE,
                    sobject="Lead",
                    record_id=lead,
                    fields=dict(values[start : start + fields_per_command]),
                )
            )
    return out


class Bench:
    """One simulator, one topic prefix and one sink for a scenario."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sim: RunningSimulator,
        bulk_threshold: int = 0,
        batch_size: int = 2000,
    ) -> None:
        self.settings, self.sim = settings, sim
        self.prefix = f"bench.{uuid.uuid4().hex[:8]}."
        TopicAdmin(settings.kafka_bootstrap).ensure(catalogue(self.prefix))
        self.codec = Codec(topic_prefix=self.prefix)
        self.results = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": self.prefix,
                "auto.offset.reset": "earliest",
            }
        )
        self.results.subscribe([self.prefix + "command.results"])
        self.stop = threading.Event()
        writer = CollectionsWriter(
            connect(auth_for(sim)), ApiBudget(BudgetSettings(reserve=0), self.stop)
        )
        sink = SalesforceSink(
            f"bench-{self.prefix}", self.codec, writer, bulk_threshold=bulk_threshold
        )
        self.runner = ProjectionRunner(
            settings.kafka_bootstrap, engine, sink, batch_size=batch_size
        )
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        self.thread = threading.Thread(
            target=run_sink, args=(self.runner, sink, engine, producer, self.stop), daemon=True
        )
        self.thread.start()

    def run(self, commands: list[SalesforceWriteRequested]) -> tuple[int, float]:
        """Send ``commands``, wait for as many results; API calls and seconds spent."""
        used, started = self.sim.state.budget.used, time.monotonic()
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "linger.ms": 20})
        topic = self.prefix + "commands.salesforce"
        for command in commands:
            encoded = self.codec.encode(topic, command)
            headers: list[tuple[str, str | bytes | None]] = list(encoded.headers)
            producer.produce(topic, encoded.value, command.subject.encode(), headers=headers)
            producer.poll(0)
        producer.flush(30)
        seen = 0
        while seen < len(commands):
            seen += sum(1 for m in self.results.consume(1000, 1.0) if m.error() is None)
        return self.sim.state.budget.used - used, time.monotonic() - started

    def close(self) -> None:
        """Stop the sink and the result reader."""
        self.stop.set()
        self.thread.join(30)
        self.runner.close()
        self.results.close()
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        mine = [
            name for name in admin.list_topics(timeout=30).topics if name.startswith(self.prefix)
        ]
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result(timeout=60)  # give the broker its file handles back


def main() -> None:
    """Run both shapes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument(
        "--bulk-threshold",
        type=int,
        default=0,
        help="records per group from which updates go through Bulk API 2.0 (0: never)",
    )
    parser.add_argument("--batch-size", type=int, default=2000, help="commands per sink batch")
    args = parser.parse_args()
    settings = load_settings()
    engine = create_engine(settings.sqlalchemy_url())
    updates = args.leads * 5
    print(
        "| shape | pass | commands | field updates | API calls | calls per 10,000 updates | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for per_command in (5, 1):
        with tempfile.TemporaryDirectory() as state_dir:
            sim = start_in_thread(SimConfig(state_dir=Path(state_dir), port=0))
            sf = connect(auth_for(sim))
            leads: list[str] = []
            for start in range(0, args.leads, 200):
                batch = [
                    {"attributes": {"type": "Lead"}, "LastName": f"B{i}", "Company": "Acme"}
                    for i in range(start, min(args.leads, start + 200))
                ]
                answer = (
                    sf.restful("composite/sobjects", method="POST", json={"records": batch}) or []
                )
                leads.extend(item["id"] for item in answer)
            bench = Bench(settings, engine, sim, args.bulk_threshold, args.batch_size)
            commands = commands_for(leads, per_command)
            fresh = [
                SalesforceWriteRequested(**{**vars(c), "id": str(uuid.uuid4())}) for c in commands
            ]
            shape = f"{per_command} field(s) per command"
            for label, batch_commands in (
                ("first", commands),
                ("replay (same ids)", commands),
                ("already current (new ids)", fresh),
            ):
                calls, seconds = bench.run(batch_commands)
                per_10k = calls * 10_000 / updates
                print(
                    f"| {shape} | {label} | {len(batch_commands):,} | {updates:,} | {calls} "
                    f"| {per_10k:.1f} | {seconds:.1f} |"
                )
            bench.close()
            sim.stop()
    engine.dispose()


if __name__ == "__main__":
    main()
