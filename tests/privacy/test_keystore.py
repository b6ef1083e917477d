"""The PostgreSQL key store and `sfe privacy erase|status`, against a scratch database."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer
from pydantic import SecretStr
from sqlalchemy import Engine, select, text

from schema_registry.codec import Codec
from schema_registry.events import SubjectErased
from sfe import audit
from sfe.cli import main
from sfe.privacy.keystore import (
    KeyStoreError,
    MasterKeyWrapper,
    PostgresKeyStore,
    email_digest,
    index_key,
    subject_keys,
)
from sfe.settings import Settings
from sfe.stack import PostgresCluster
from tests.kafka_helpers import delete_topics_with_prefix
from tests.security.test_audit import database, engine

pytestmark = pytest.mark.integration

LEAD, OTHER = "00Q8d0000000101AAA", "00Q8d0000000102AAA"
MASTER = os.urandom(32)


__all__ = ["database", "engine"]  # the fixtures, shared with the audit trail's tests


def store(engine: Engine, master: bytes = MASTER, namespace: str = "test.") -> PostgresKeyStore:
    return PostgresKeyStore(engine, MasterKeyWrapper(master), namespace)


def test_a_key_is_made_once_and_read_back_by_every_process(engine: Engine) -> None:
    first = store(engine).keys([LEAD], create=True)[LEAD]
    assert first is not None and len(first) == 32
    assert store(engine).keys([LEAD, OTHER], create=False) == {LEAD: first}
    with engine.connect() as connection:
        wrapped = connection.execute(select(subject_keys.c.wrapped_key)).scalar_one()
    assert first not in bytes(wrapped)  # stored wrapped, never in the clear


def test_racing_processes_agree_on_one_key(engine: Engine) -> None:
    subjects = [f"00Q8d00000002{n:02d}AAA" for n in range(50)]
    answers: list[dict[str, bytes | None]] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        answers.append(store(engine).keys(subjects, create=True))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4 and all(answer == answers[0] for answer in answers)
    assert len(set(answers[0].values())) == 50


def test_namespaces_keep_environments_apart(engine: Engine) -> None:
    staging = store(engine, namespace="staging.").keys([LEAD], create=True)[LEAD]
    production = store(engine, namespace="").keys([LEAD], create=True)[LEAD]
    assert staging != production
    store(engine, namespace="staging.").erase([LEAD], "e1")
    assert store(engine, namespace="staging.").keys([LEAD], create=True) == {LEAD: None}
    assert store(engine, namespace="").keys([LEAD], create=False) == {LEAD: production}


def test_erasure_destroys_the_key_for_good_and_drops_the_email_index(engine: Engine) -> None:
    keys = store(engine)
    keys.keys([LEAD, OTHER], create=True)
    digest = email_digest(index_key(keys), "ada@example.org")
    keys.index_emails([(digest, LEAD), (digest, OTHER)])
    assert keys.subjects_with_email(digest) == [LEAD, OTHER]
    audited: list[list[str]] = []
    assert keys.erase([LEAD, "00Q8d0000000199AAA"], "e1", within=lambda c, e: audited.append(e))
    assert audited == [[LEAD]]
    assert keys.keys([LEAD, OTHER, "00Q8d0000000199AAA"], create=True)[LEAD] is None
    assert keys.keys(["00Q8d0000000199AAA"], create=True) == {"00Q8d0000000199AAA": None}
    assert keys.keys([OTHER], create=False)[OTHER] is not None
    assert keys.subjects_with_email(digest) == [OTHER]
    assert keys.erase([LEAD], "e2") == []  # already gone


def test_erasure_leaves_no_copy_of_the_wrapped_key_in_the_table_files(
    engine: Engine, stack: Settings
) -> None:
    keys = store(engine)
    keys.keys([LEAD], create=True)
    with engine.connect() as connection:
        wrapped = bytes(connection.execute(select(subject_keys.c.wrapped_key)).scalar_one())
        relation = connection.execute(
            text("SELECT pg_relation_filepath('privacy_subject_keys')")
        ).scalar_one()
    cluster = PostgresCluster(stack)
    path = cluster.data_dir / relation

    def table_file() -> bytes:
        with psycopg.connect(cluster.superuser_conninfo(), autocommit=True) as connection:
            connection.execute("CHECKPOINT")  # the pages reach the file
        return path.read_bytes()

    assert wrapped in table_file()  # the check sees a key where there is one
    keys.erase([LEAD], "e1")
    assert wrapped not in table_file()


def test_another_master_key_is_refused_by_name(engine: Engine) -> None:
    store(engine).keys([LEAD], create=True)
    with pytest.raises(KeyStoreError, match="wrapped by master:"):
        store(engine, os.urandom(32)).keys([LEAD], create=False)


def test_a_rotation_reads_both_master_keys_then_moves_every_key_to_the_new_one(
    engine: Engine,
) -> None:
    new_master = os.urandom(32)
    old, new = MasterKeyWrapper(MASTER), MasterKeyWrapper(new_master)
    subjects = [f"00Q8d00000003{n:02d}AAA" for n in range(30)]
    before = store(engine).keys(subjects, create=True)
    store(engine).erase([subjects[0]], "e-rotation")
    # Step 1: the new key is read too, the old one still wraps.
    step_one = PostgresKeyStore(engine, old, "test.", secondary=[new])
    assert step_one.keys(subjects[1:], create=False) == {s: before[s] for s in subjects[1:]}
    # Step 2: the new key wraps new subjects' keys; both are read.
    step_two = PostgresKeyStore(engine, new, "test.", secondary=[old])
    fresh = step_two.keys([OTHER], create=True)[OTHER]
    assert step_one.keys([OTHER], create=False) == {OTHER: fresh}
    with pytest.raises(KeyStoreError, match="SFE_PRIVACY_MASTER_KEY_SECONDARY"):
        store(engine, new_master).keys([subjects[1]], create=False)
    assert step_two.wrapped_by() == {old.name: 29, new.name: 1}
    # Step 3: every key moves to the new master key; erased subjects stay erased.
    moved = step_two.rewrap(batch_size=7)
    assert moved == {old.name: 29}
    assert step_two.wrapped_by() == {new.name: 30}
    assert step_two.rewrap() == {}
    # Step 4: the new key alone opens every key, unchanged.
    alone = store(engine, new_master)
    assert alone.keys([*subjects, OTHER], create=False) == {
        subjects[0]: None,
        **{s: before[s] for s in subjects[1:]},
        OTHER: fresh,
    }
    with pytest.raises(KeyStoreError, match="wrapped by master:"):
        store(engine).keys([subjects[1]], create=False)


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_env(stack: Settings, database: str) -> Iterator[dict[str, str | None]]:
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    env = {
        "SFE_DATABASE_URL": database,
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_PRIVACY_MASTER_KEY": base64.b64encode(MASTER).decode(),
        "SFE_PRIVACY_MASTER_KEY_FILE": None,  # the suite's default; this test has its own
        "SFE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
    }
    try:
        yield env
    finally:
        delete_topics_with_prefix(stack, prefix)


def erasure_events(stack: Settings, prefix: str) -> list[SubjectErased]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    codec = Codec(topic_prefix=prefix)
    consumer.subscribe([prefix + "privacy.erasures"])
    found: list[SubjectErased] = []
    try:
        for _ in range(40):
            message = consumer.poll(0.5)
            if message is None or message.error():
                if found:
                    break
                continue
            event = codec.decode(message.topic(), message.value(), message.headers() or [])
            assert isinstance(event, SubjectErased)
            found.append(event)
    finally:
        consumer.close()
    return found


def test_erase_by_address_destroys_keys_audits_and_records_an_event(
    cli_env: dict[str, str | None], engine: Engine, stack: Settings
) -> None:
    prefix = str(cli_env["SFE_TOPIC_PREFIX"])
    keys = store(engine, namespace=prefix)
    keys.keys([LEAD, OTHER], create=True)
    keys.index_emails([(email_digest(index_key(keys), "ada@example.org"), LEAD)])
    runner = CliRunner()
    assert runner.invoke(main, ["topics", "ensure"], env=cli_env).exit_code == 0
    result = runner.invoke(
        main,
        ["privacy", "erase", "--subject", "Ada@Example.org", "--reason", "ticket 42"],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    assert LEAD in result.output and "1 subject(s) erased" in result.output
    status = runner.invoke(main, ["privacy", "status", "--subject", LEAD], env=cli_env)
    assert status.output.strip() == f"{LEAD} erased"
    status = runner.invoke(main, ["privacy", "status", "--subject", OTHER], env=cli_env)
    assert status.output.strip() == f"{OTHER} key held"
    (event,) = erasure_events(stack, prefix)
    assert event.subjects == (LEAD,) and event.matched_by == "email"
    assert event.reason == "ticket 42" and "example" not in repr(event).lower()
    with engine.connect() as connection:
        (entry,) = [e for e in audit.entries(connection) if e.action == "privacy.erase"]
        assert entry.subject == event.id
        assert entry.details["keys_destroyed"] == [LEAD]
        assert audit.verify(connection).ok
    again = runner.invoke(main, ["privacy", "erase", "--subject", LEAD], env=cli_env)
    assert again.exit_code == 0 and "had no key left" in again.output


def test_rewrap_moves_the_keys_audits_and_says_what_is_left(
    cli_env: dict[str, str | None], engine: Engine
) -> None:
    prefix = str(cli_env["SFE_TOPIC_PREFIX"])
    store(engine, namespace=prefix).keys([LEAD, OTHER], create=True)
    new_master = os.urandom(32)
    rotated = {
        **cli_env,
        "SFE_PRIVACY_MASTER_KEY": base64.b64encode(new_master).decode(),
        "SFE_PRIVACY_MASTER_KEY_SECONDARY": base64.b64encode(MASTER).decode(),
    }
    runner = CliRunner()
    result = runner.invoke(main, ["privacy", "rewrap"], env=rotated)
    assert result.exit_code == 0, result.output
    old_name, new_name = MasterKeyWrapper(MASTER).name, MasterKeyWrapper(new_master).name
    assert f"2 key(s) rewrapped with {new_name}" in result.output
    assert f"2 from {old_name}" in result.output
    assert store(engine, new_master, prefix).wrapped_by() == {new_name: 2}
    with engine.connect() as connection:
        (entry,) = [
            e
            for e in audit.entries(connection)
            if e.action == "privacy.rewrap" and e.subject == prefix
        ]
        assert entry.details["rewrapped"] == {old_name: 2}
        assert audit.verify(connection).ok
    # A key made meanwhile by a process still wrapping with the old key is reported.
    store(engine, namespace=prefix).keys(["00Q8d0000000099AAA"], create=True)
    behind = runner.invoke(
        main, ["privacy", "rewrap"], env={**rotated, "SFE_PRIVACY_MASTER_KEY_SECONDARY": None}
    )
    assert behind.exit_code == 2 and "SFE_PRIVACY_MASTER_KEY_SECONDARY" in behind.output
    again = runner.invoke(main, ["privacy", "rewrap"], env=rotated)
    assert again.exit_code == 0 and "1 key(s) rewrapped" in again.output


def test_misuse_prints_what_to_type(cli_env: dict[str, str | None]) -> None:
    runner = CliRunner()
    wrong = runner.invoke(main, ["privacy", "erase", "--subject", "Ada Lovelace"], env=cli_env)
    assert wrong.exit_code == 2
    assert "sfe privacy erase --subject 00Q" in wrong.output
    unknown = runner.invoke(
        main, ["privacy", "erase", "--subject", "nobody@example.org"], env=cli_env
    )
    assert unknown.exit_code == 1 and "nothing erased" in unknown.output
    bad_key = runner.invoke(
        main,
        ["privacy", "status", "--subject", LEAD],
        env={**cli_env, "SFE_PRIVACY_MASTER_KEY": "not-a-key"},
    )
    assert bad_key.exit_code == 2 and "SFE_PRIVACY_MASTER_KEY" in bad_key.output


def test_a_missing_master_key_names_the_variable(
    stack: Settings, tmp_path: Path, database: str
) -> None:
    settings = stack.model_copy(
        update={
            "state_dir": tmp_path,
            "privacy_master_key": None,
            "database_url": SecretStr(database),
        }
    )
    from sfe.privacy.setup import privacy_from
    from sfe.settings import SettingsError

    with pytest.raises(SettingsError, match="SFE_PRIVACY_MASTER_KEY: not set"):
        privacy_from(settings)
    assert privacy_from(settings.model_copy(update={"privacy_encryption": False})) is None
