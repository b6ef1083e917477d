"""Records per second of ``sfe replay --projection postgres`` (a :class:`Rebuild`) on the local stack.

Creates a scratch database ``sfe_scratch_<suffix>`` (migrated) and the whole topic
catalogue under the prefix ``bench.<suffix>.``, produces ``--events`` distinct events
(every one encoded with the codec: 40 % ``PredictionMade``, 35 % ``CommandExecuted``
of Salesforce writes — updates, creates, rejections with errors, and a few results of
other commands that the projection ignores — and 25 % ``WorkflowAdvanced`` transitions
of runs of five steps), then times ``Rebuild(...).run()`` into the scratch database.
Prints the records per second, the time of each phase of the rebuild (consume and
decode, write into the staging tables, swap, hash; the first two overlap), the CPU
time of this process, the load average and the content hash. The database and the
topics are dropped at the end, also on Ctrl-C.

Usage (the local stack running: ``.venv/bin/sfe stack up``)::

    .venv/bin/python bench/bench_replay.py [--events 1000000] [--batch-size 20000] [--readers 2] [--profile FILE]

``--profile FILE`` writes a cProfile of the rebuild (not of producing) to ``FILE``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from sqlalchemy import create_engine

from projections.postgres import PostgresProjection
from projections.replay import STAGING_SUFFIX, Rebuild
from schema_registry.codec import Codec
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    Event,
    Factor,
    ModelRef,
    PredictionMade,
    SalesforceError,
    WorkflowAdvanced,
)
from sfe.settings import load_settings
from streams.topic_admin import TopicAdmin
from streams.topics import catalogue

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.databases import scratch_database
from tests.kafka_helpers import delete_topics_with_prefix

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
#: Transitions of one workflow run: (to_state, steps_completed).
RUN_STEPS = (("started", 0), ("provisioning", 1), ("provisioning", 2), ("configuring", 3))
FEATURES = ("industry", "employees", "annual_revenue", "lead_source", "title_seniority")


def prediction(n: int) -> PredictionMade:
    """The ``n``-th score of the log."""
    spread = (n * 7919) % 10007
    return PredictionMade(
        id=f"prediction-{n:010d}",
        source="agents.lead_qualification",
        subject=f"00Q{n % 400_000:015d}",
        time=T0 + timedelta(milliseconds=n * 37),
        purpose="lead_score" if n % 5 else "churn_risk",
        entity="Lead",
        model=ModelRef(name="lead_conversion", version=f"2026.11.{n % 3}"),
        score=spread / 10007,
        features={"employees": n % 5000, "industry": FEATURES[n % 5]},
        factors=tuple(
            Factor(name=FEATURES[(n + i) % 5], contribution=((spread >> i) % 200 - 100) / 317)
            for i in range(3)
        ),
    )


def result(n: int) -> CommandExecuted:
    """The ``n``-th command result: mostly applied updates, some creates, rejections, others."""
    kind = n % 100
    record = f"00Q{n % 400_000:012d}AAA"
    fields: dict[str, object] = {
        "id": f"result-{n:010d}",
        "source": "projections.salesforce",
        "subject": record,
        "time": T0 + timedelta(milliseconds=n * 37),
        "causation_id": f"command-{n:010d}",
        "command_type": "SalesforceWriteRequested",
        "target": f"Lead/{record}",
        "outcome": CommandOutcome.APPLIED,
        "operation": "UPDATE",
    }
    if kind < 5:
        fields |= {
            "target": "Task/new",
            "operation": "CREATE",
            "salesforce_id": f"00T{n:012d}AAA",
        }
    elif kind < 8:
        fields |= {
            "outcome": CommandOutcome.REJECTED,
            "errors": (
                SalesforceError(
                    status_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    message=f"Rating must be set before stage {n % 7}",
                    fields=("Rating", "Status"),
                ),
            ),
        }
    elif kind < 10:
        fields |= {"command_type": "NotificationRequested", "target": "slack/#sales"}
    elif kind < 12:
        fields |= {"outcome": CommandOutcome.ALREADY_APPLIED}
    return CommandExecuted(**fields)  # type: ignore[arg-type]


def transition(n: int) -> WorkflowAdvanced:
    """The ``n``-th workflow transition: runs of five, ending completed or failed."""
    run, step = divmod(n, len(RUN_STEPS) + 1)
    if step < len(RUN_STEPS):
        to_state, steps = RUN_STEPS[step]
    else:
        to_state, steps = ("failed", 3) if run % 11 == 0 else ("completed", 4)
    return WorkflowAdvanced(
        id=f"onb-{run:08d}-t{step}",
        source="agents.onboarding",
        subject=f"onb-{run:08d}",
        time=T0 + timedelta(minutes=run, seconds=step * 20),
        workflow="onboarding" if run % 4 else "churn_prevention",
        from_state=RUN_STEPS[step - 1][0] if step else None,
        to_state=to_state,
        detail=f"step {step} of run {run}",
        attributes={
            "record_id": f"001{run % 90_000:012d}AAA",
            "steps_completed": str(steps),
            "total_steps": "4",
        },
    )


def events(count: int) -> Iterator[tuple[str, Event]]:
    """``count`` events of the mix, as (unprefixed topic, event)."""
    made = {"predictions": 0, "command.results": 0, "workflow.events": 0}
    for n in range(count):
        slot = n % 20
        if slot < 8:
            made["predictions"] += 1
            yield "predictions", prediction(made["predictions"])
        elif slot < 15:
            made["command.results"] += 1
            yield "command.results", result(made["command.results"])
        else:
            made["workflow.events"] += 1
            yield "workflow.events", transition(made["workflow.events"])


def produce(bootstrap: str, codec: Codec, prefix: str, count: int) -> float:
    """Produce ``count`` events; the seconds it took."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        }
    )
    started = time.perf_counter()
    for done, (topic, event) in enumerate(events(count), 1):
        full = prefix + topic
        encoded = codec.encode(full, event)
        headers: list[tuple[str, str | bytes | None]] = list(encoded.headers)
        while True:
            try:
                producer.produce(
                    full, value=encoded.value, key=event.subject.encode(), headers=headers
                )
                break
            except BufferError:
                producer.poll(0.1)
        if done % 10_000 == 0:
            producer.poll(0)
        if done % 200_000 == 0:
            print(f"  produced {done:,}/{count:,}", flush=True)
    if producer.flush(120) != 0:
        raise RuntimeError("not every event was delivered")
    return time.perf_counter() - started


def main() -> None:
    """Produce, rebuild, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--readers", type=int, default=2, help="reader processes")
    parser.add_argument("--profile", help="write a cProfile of the rebuild to this file")
    args = parser.parse_args()

    settings = load_settings()
    suffix = uuid.uuid4().hex[:8]
    prefix = f"bench.{suffix}."
    with scratch_database(settings, suffix) as url:
        TopicAdmin(settings.kafka_bootstrap).ensure(catalogue(prefix))
        engine = create_engine(url)
        try:
            codec = Codec(topic_prefix=prefix)
            print(f"producing {args.events:,} events under {prefix}", flush=True)
            produced_s = produce(settings.kafka_bootstrap, codec, prefix, args.events)
            print(f"produced in {produced_s:.1f} s ({args.events / produced_s:,.0f}/s)")

            dlq = Producer({"bootstrap.servers": settings.kafka_bootstrap})
            projection = PostgresProjection(codec, dlq, f"bench-{suffix}", STAGING_SUFFIX)
            rebuild = Rebuild(
                engine,
                settings.kafka_bootstrap,
                projection,
                None,
                args.batch_size,
                readers=args.readers,
            )
            profiler = cProfile.Profile() if args.profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            outcome = rebuild.run(threading.Event())
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

            print(f"rebuild: {outcome.consumed:,} records in {wall:.1f} s")
            print(f"  records/s: {outcome.consumed / wall:,.0f}")
            print(f"  CPU time of this process: {cpu:.1f} s")
            for phase, seconds in rebuild.timings.items():
                print(f"  {phase}: {seconds:.1f} s")
            print(f"  rows: {outcome.rows}")
            print(f"  content hash: {outcome.digest}")
            print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            engine.dispose()
            delete_topics_with_prefix(settings, prefix)


if __name__ == "__main__":
    main()
