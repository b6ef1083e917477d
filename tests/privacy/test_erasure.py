"""Erase a data subject, replay from the earliest record, and find no trace of its personal data.

Two leads flow through the whole pipeline as processes (simulator -> `sfe ingest` ->
`sfe worker --role leads` -> `sfe sink salesforce` and `sfe projection run`), one of
them high-value with a name, an address, phone numbers and free text. Their personal
values are sealed in every topic from the start; they open with the subject's key.
Then `sfe privacy erase --subject <address>` destroys that lead's key, the read models
are rebuilt from the earliest record and history is rescored: both work, and the
erased lead's personal data is found nowhere in Kafka (any topic of the run, the
rescore's namespace included), PostgreSQL (every table of the database) or the logs of
every process, while the other lead's values still open.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import create_engine, text

from schema_registry.codec import Codec
from schema_registry.events import Event, LeadScored, RecordChanged
from sfe.privacy.cipher import ERASED, is_sealed
from sfe.privacy.setup import privacy_from
from sfe.settings import Settings, load_settings
from tests.databases import scratch_database
from tests.ingest.test_ingest_process import SFE, client, collection, environment  # noqa: F401

pytestmark = pytest.mark.integration

ERASED_EMAIL = "quintessa.marbleworth@erasure.example"
KEPT_EMAIL = "bartholomew.keene@erasure.example"
#: Every trace of the erased lead looked for, compared case-insensitively.
NEEDLES = ("quintessa", "marbleworth", "0142-7781", "0199-3324", "after 4pm")


def lead(first: str, last: str, email: str, phone: str, mobile: str) -> dict[str, object]:
    return {
        "attributes": {"type": "Lead"},
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Phone": phone,
        "MobilePhone": mobile,
        "Title": "Chief Technology Officer",
        "Description": f"{first} prefers calls after 4pm",
        "Company": "Erasure Works",
        "Industry": "Technology",
        "NumberOfEmployees": 400,
        "AnnualRevenue": 50_000_000,
        "Einstein_Lead_Score__c": 95.0,
    }


@pytest.fixture
def pipeline(
    stack: Settings,
    environment: dict[str, str],  # noqa: F811
    registry_root: Path,
    trained: dict[str, object],
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    with scratch_database(stack) as database:
        env = {
            **environment,
            "SFE_DATABASE_URL": database,
            "SFE_MODEL_DIR": str(registry_root),
            "SFE_SINK_NAME": f"test-{uuid.uuid4().hex[:8]}",
            "SFE_LEAD_EINSTEIN_WEIGHT": "1.0",
            "SFE_LOG_LEVEL": "DEBUG",
            "LOGS": str(tmp_path / "logs"),
        }
        (tmp_path / "logs").mkdir()
        yield env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    log = (Path(env["LOGS"]) / f"{args[0]}-{uuid.uuid4().hex[:6]}.log").open("wb")
    return subprocess.Popen([SFE, *args], env=env, stdout=log, stderr=log)


def run(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run an ``sfe`` command to its end; its output is kept with the other logs."""
    done = subprocess.run([SFE, *args], env=env, capture_output=True, timeout=timeout)
    output = done.stdout.decode() + done.stderr.decode()
    (Path(env["LOGS"]) / f"{args[0]}-{uuid.uuid4().hex[:6]}.log").write_text(output)
    assert done.returncode == 0, f"sfe {' '.join(args)}: {output[-3000:]}"
    return done.stdout.decode()


def raw_records(env: dict[str, str]) -> list[tuple[str, bytes]]:
    """(topic, key + value + headers) of every record of every topic of the run's prefix."""
    prefix = env["SFE_TOPIC_PREFIX"]
    consumer = Consumer(
        {
            "bootstrap.servers": env["SFE_KAFKA_BOOTSTRAP"],
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",  # aborted attempts are in the log too
        }
    )
    found: list[tuple[str, bytes]] = []
    try:
        metadata = consumer.list_topics(timeout=10).topics
        assignment = []
        ends: dict[tuple[str, int], int] = {}
        reached: dict[tuple[str, int], int] = {}
        for name, topic in metadata.items():
            if not name.startswith(prefix):
                continue
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), 10)
                if high > low:
                    assignment.append(TopicPartition(name, partition, low))
                    ends[(name, partition)] = high
        consumer.assign(assignment)
        # Transaction markers take offsets too: read until every partition's position has
        # passed its last data record and nothing new came for a while.
        idle, deadline = 0, time.monotonic() + 60
        while idle < 6 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                idle += 1
                continue
            idle = 0
            headers = b"".join(k.encode() + (v or b"") for k, v in message.headers() or [])
            found.append(
                (str(message.topic()), (message.key() or b"") + (message.value() or b"") + headers)
            )
            reached[(str(message.topic()), int(message.partition() or 0))] = message.offset()
        short = [tp for tp, end in ends.items() if reached.get(tp, -1) < 0]
        assert not short, f"nothing read from {short}"
    finally:
        consumer.close()
    return found


def events_of(env: dict[str, str], records: list[tuple[str, bytes]]) -> list[Event]:
    """Decoded events of the records of topics a codec knows (rescore namespaces included)."""
    codec = Codec(topic_prefix=env["SFE_TOPIC_PREFIX"])
    consumer = Consumer(
        {
            "bootstrap.servers": env["SFE_KAFKA_BOOTSTRAP"],
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    topics = sorted({t for t, _ in records if t.startswith(env["SFE_TOPIC_PREFIX"] + "sf.cdc.")})
    topics += [env["SFE_TOPIC_PREFIX"] + "decisions.leads"]
    consumer.subscribe(topics)
    events: list[Event] = []
    idle = 0
    try:
        while idle < 6:
            message = consumer.poll(0.5)
            if message is None or message.error():
                idle += 1
                continue
            idle = 0
            events.append(codec.decode(message.topic(), message.value(), message.headers() or []))
    finally:
        consumer.close()
    return events


def traces(text_blob: str) -> list[str]:
    lowered = text_blob.lower()
    return [needle for needle in NEEDLES if needle in lowered]


def database_dump(database: str) -> str:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            raw = connection.connection.driver_connection
            assert raw is not None
            parts = []
            for table in sorted(tables):
                query = f'COPY (SELECT * FROM "{table}") TO STDOUT'
                with raw.cursor() as cursor, cursor.copy(query) as copy:
                    parts.append(f"-- {table}\n" + b"".join(bytes(c) for c in copy).decode())
            return "\n".join(parts)
    finally:
        engine.dispose()


def privacy_for(env: dict[str, str]):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    privacy = privacy_from(settings)
    assert privacy is not None
    return privacy


def test_erase_then_replay_leaves_no_trace_of_the_subject(
    stack: Settings, pipeline: dict[str, str]
) -> None:
    env = pipeline
    sf = client(env)
    erased_id, kept_id = (
        item["id"]
        for item in collection(
            sf,
            "POST",
            [
                lead("Quintessa", "Marbleworth", ERASED_EMAIL, "+1 555-0142-7781", "555-0199-3324"),
                lead("Bartholomew", "Keene", KEPT_EMAIL, "+1 555-0100-0001", "555-0100-0002"),
            ],
        )
    )
    processes = [
        start(env, "ingest", "--channel", "/data/LeadChangeEvent", "--start-at", "all"),
        start(env, "worker", "--role", "leads"),
        start(env, "sink", "salesforce"),
        start(env, "projection", "run"),
    ]
    engine = create_engine(env["SFE_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            scored = sf.query(
                f"SELECT Id, Decision_Makers__c FROM Lead WHERE Id IN ('{erased_id}', '{kept_id}')"
                " AND AI_Enhanced_Score__c != null"
            )["records"]
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT count(*) FROM ml_predictions")).scalar()
            if len(scored) == 2 and rows == 2:
                break
            for process in processes:
                assert process.poll() is None, f"{process.args} exited early"
            time.sleep(1)
        else:
            pytest.fail("the two leads were not scored, written back and projected in time")
        written = {r["Id"]: r["Decision_Makers__c"] for r in scored}
        assert "Marbleworth" in str(written[erased_id])  # the sink opened it for Salesforce
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        engine.dispose()

    # Sealed at rest from the start, and readable with the key.
    records = raw_records(env)
    assert len(records) > 10
    assert not [t for t, blob in records if traces(blob.decode("latin-1"))]
    privacy = privacy_for(env)
    before = privacy.unseal(events_of(env, records))
    emails = {e.fields.get("Email") for e in before if isinstance(e, RecordChanged)}
    assert {ERASED_EMAIL, KEPT_EMAIL} <= emails
    makers = {
        e.subject: e.enrichment.get("decision_makers") for e in before if isinstance(e, LeadScored)
    }
    assert "Quintessa Marbleworth" in str(makers[erased_id])

    erasure = run(env, "privacy", "erase", "--subject", ERASED_EMAIL.upper(), "--reason", "DSR-7")
    assert erased_id in erasure and kept_id not in erasure
    assert run(env, "privacy", "status", "--subject", erased_id).strip() == f"{erased_id} erased"

    # Replays still work: the read models rebuilt from the earliest record, history rescored.
    run(env, "replay", "--projection", "postgres", "--readers", "1")
    rebuilt = create_engine(env["SFE_DATABASE_URL"])
    with rebuilt.connect() as connection:
        subjects = connection.execute(text("SELECT account_id FROM ml_predictions")).scalars()
        assert sorted(subjects) == sorted([erased_id, kept_id])
    rebuilt.dispose()
    report = json.loads(run(env, "replay", "--rescore", "--model", "lead:1", "--json"))
    assert (report["facts"], report["matched"]) == (2, 2), report

    # No trace anywhere: the log (every topic of the run, the rescore's too) ...
    records = raw_records(env)
    assert any(t.startswith(report["namespace"]) for t, _ in records)
    assert not [t for t, blob in records if traces(blob.decode("latin-1"))]
    after = privacy_for(env).unseal(events_of(env, records))
    erased_values = [
        value
        for event in after
        if isinstance(event, RecordChanged) and event.subject == erased_id
        for name, value in event.fields.items()
        if name in ("FirstName", "LastName", "Email", "Phone", "MobilePhone", "Description")
    ]
    assert erased_values and all(value is None for value in erased_values)
    assert KEPT_EMAIL in {e.fields.get("Email") for e in after if isinstance(e, RecordChanged)}
    decision = next(e for e in after if isinstance(e, LeadScored) and e.subject == erased_id)
    assert decision.enrichment["decision_makers"] == ERASED
    # ... PostgreSQL (every table: read models, the sink's memory, outbox, keys, audit) ...
    dump = database_dump(env["SFE_DATABASE_URL"])
    assert "ml_predictions" in dump and is_sealed("sfe:pii:v1:x:y")
    assert traces(dump) == []
    assert erased_id in dump  # the record id itself is no personal data: it stays
    # ... and the logs of every process and command of the run.
    logs = {p.name: p.read_text(errors="replace") for p in Path(env["LOGS"]).iterdir()}
    assert len(logs) >= 8 and any("DEBUG" in text_ for text_ in logs.values())
    assert {name: traces(text_) for name, text_ in logs.items() if traces(text_)} == {}
