"""End-to-end throughput of lead qualification: CDC Lead creates in, decisions and commands out.

Appends ``--leads`` CDC ``CREATE`` events of realistic leads (the simulator's workload
generator) to ``sf.cdc.Lead`` under a fresh topic prefix, then starts ``--workers``
processes of ``sfe worker --role leads`` (the transactional batch path) and polls
their consumer group's committed offsets until the last input offset is committed.
Reports input events per second from the first committed batch to the last, the
events appended, and checks that ``decisions.leads`` holds exactly one committed
decision per lead. With ``SFE_PRIVACY_ENCRYPTION`` on (the default) the leads' personal
values are sealed before they are appended, in batches of 2,000 as the ingestor seals
them, so the workers open and seal as in production; their keys are deleted afterwards.

Needs the local stack (``sfe stack up``) and a promoted ``lead`` model (``sfe train
--all``; without one the benchmark trains a small model into a temporary registry).

Usage: ``.venv/bin/python bench/bench_leads.py [--leads 100000] [--batch 2000] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, delete

from ml.features.definitions import FEATURE_SETS
from ml.inference import LoadedModel, load_model
from ml.registry import Registry
from schema_registry.codec import Codec
from schema_registry.events import ChangeEventHeader, ChangeType, RecordChanged
from schema_registry.ids import change_event_id
from sfe.privacy.keystore import subject_emails, subject_keys
from sfe.privacy.setup import privacy_from
from sfe.settings import Settings, load_settings
from simulator import load as workload
from streams.topic_admin import TopicAdmin
from streams.topics import catalogue
from streams.worker.leads import LEAD_TOPIC


def lead_model(settings: Settings) -> tuple[LoadedModel, Path]:
    """The promoted lead model and its registry, or a small one trained into a temporary one."""
    registry = Registry(settings.models_path)
    try:
        return load_model(registry, "lead", FEATURE_SETS["lead"]), settings.models_path
    except Exception:
        from ml.training.estimators import Hyperparameters
        from ml.training.pipeline import synthetic_training_data, train

        root = Path(tempfile.mkdtemp(prefix="bench-leads-"))
        scratch = Registry(root)
        hp = Hyperparameters(trees=60, forest_trees=60, epochs=5, seed=3)
        train("lead", synthetic_training_data("lead", 4000, seed=3), scratch, hp=hp)
        return load_model(scratch, "lead", FEATURE_SETS["lead"]), root


def lead_changes(count: int, seed: int = 11) -> list[RecordChanged]:
    """CDC CREATE events of ``count`` generated leads, as the ingestor appends them."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    changes = []
    for index, fields in enumerate(workload.leads(rng, count)):
        lead_id = f"00Q{index:015d}"[:18]
        uuid_ = str(uuid.UUID(int=rng.getrandbits(128)))
        record = {
            **fields,
            "Id": lead_id,
            "Status": "Open - Not Contacted",
            "Einstein_Lead_Score__c": float(rng.randint(5, 99)),
            "CreatedDate": now.isoformat(),
        }
        changes.append(
            RecordChanged(
                id=change_event_id(uuid_, lead_id),
                source="bench",
                subject=lead_id,
                time=now,
                header=ChangeEventHeader(
                    entity_name="Lead",
                    record_ids=(lead_id,),
                    change_type=ChangeType.CREATE,
                    change_origin="com/salesforce/api/rest/62.0",
                    transaction_key=uuid_,
                    sequence_number=1,
                    commit_timestamp=now,
                    commit_number=index + 1,
                    commit_user="005000000000001AAA",
                    changed_fields=tuple(record),
                ),
                replay_id=str(index + 1),
                event_uuid=uuid_,
                fields=record,
            )
        )
    return changes


def append(settings: Settings, prefix: str, changes: list[RecordChanged]) -> None:
    """Append ``changes`` to the prefixed ``sf.cdc.Lead`` topic."""
    codec = Codec(topic_prefix=prefix)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    for change in changes:
        encoded = codec.encode(prefix + LEAD_TOPIC, change)
        while True:
            try:
                producer.produce(
                    prefix + LEAD_TOPIC,
                    key=change.subject.encode(),
                    value=encoded.value,
                    headers=list(encoded.headers),
                )
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def committed(settings: Settings, group: str, topic: str) -> int:
    """Offsets the consumer group has committed on ``topic``, summed over partitions."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10))
    finally:
        consumer.close()


def count_committed(settings: Settings, topic: str) -> tuple[int, int]:
    """(records, distinct keys) of ``topic`` visible to ``read_committed`` readers."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"bench-count-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records, keys, idle = 0, set(), 0
    try:
        while idle < 10:
            batch = consumer.consume(10_000, 0.5)
            if not batch:
                idle += 1
                continue
            idle = 0
            for message in batch:
                if message.error() is None:
                    records += 1
                    keys.add(message.key())
    finally:
        consumer.close()
    return records, len(keys)


def sealed(settings: Settings, changes: list[RecordChanged]) -> list[RecordChanged]:
    """``changes`` with their personal values sealed as the ingestor seals them."""
    privacy = privacy_from(settings)
    if privacy is None:
        return changes
    began = time.perf_counter()
    out: list[RecordChanged] = []
    for start in range(0, len(changes), 2000):
        out.extend(privacy.seal(changes[start : start + 2000]))
    print(f"sealed the personal values in {time.perf_counter() - began:.1f} s", flush=True)
    return out


def forget_keys(settings: Settings) -> None:
    """Delete the subject keys the benchmark made (its namespace is its topic prefix)."""
    engine = create_engine(settings.sqlalchemy_url())
    try:
        with engine.begin() as connection:
            for table in (subject_keys, subject_emails):
                connection.execute(delete(table).where(table.c.namespace == settings.topic_prefix))
    finally:
        engine.dispose()


def run(settings: Settings, leads: int, batch: int, workers: int) -> None:
    """Append, qualify with ``workers`` processes of ``sfe worker --role leads``, report."""
    prefix = f"bench-leads-{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update={"topic_prefix": prefix})
    TopicAdmin(settings.kafka_bootstrap).ensure(catalogue(prefix))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        model, model_dir = lead_model(settings)
        print(f"model {model.manifest.ref}; generating {leads:,} leads", flush=True)
        changes = sealed(settings, lead_changes(leads))
        began = time.perf_counter()
        append(settings, prefix, changes)
        print(f"appended {leads:,} CDC events in {time.perf_counter() - began:.1f} s", flush=True)
        env = {
            **os.environ,
            "SFE_TOPIC_PREFIX": prefix,
            "SFE_MODEL_DIR": str(model_dir),
            "SFE_METRICS_PORT": "0",
            "SFE_WORKER_BATCH_SIZE": str(batch),
            "SFE_LOG_LEVEL": "WARNING",
        }
        for _ in range(workers):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sfe.cli", "worker", "--role", "leads"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        group, topic = f"{prefix}sfe.worker.leads", prefix + LEAD_TOPIC
        first: float | None = None
        done = 0
        while done < leads:
            if any(p.poll() is not None for p in processes):
                raise SystemExit("a worker process exited early")
            done = committed(settings, group, topic)
            if done and first is None:
                first, first_done = time.perf_counter(), done
            time.sleep(0.25)
        finished = time.perf_counter()
        assert first is not None
        elapsed = finished - first
        decisions, distinct = count_committed(settings, prefix + "decisions.leads")
        produced = sum(
            count_committed(settings, prefix + name)[0]
            for name in (
                "decisions.leads",
                "predictions",
                "commands.salesforce",
                "commands.notifications",
                "workflow.events",
            )
        )
        rate = (leads - first_done) / elapsed
        print()
        print("| leads | workers | batch | seconds | CDC events/s | events appended | appended/s |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {leads:,} | {workers} | {batch} | {elapsed:.1f} | {rate:,.0f} | "
            f"{produced:,} | {produced * rate / leads:,.0f} |"
        )
        print(f"\ncommitted decisions: {decisions:,} for {distinct:,} distinct leads")
        if decisions != leads or distinct != leads:
            raise SystemExit("decision count does not match the leads appended")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        if settings.privacy_encryption:
            forget_keys(settings)
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    run(load_settings(), args.leads, args.batch, args.workers)


if __name__ == "__main__":
    main()
