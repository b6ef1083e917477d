"""The hash-chained audit trail against the real PostgreSQL (scratch databases).

Tampering is simulated as an attacker with the table owner's rights would do it:
disable the append-only trigger, then edit or delete entries directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from projections.salesforce_sink import AUDIT_ACTION, AUDIT_MAX_IDS
from schema_registry.events import CommandOutcome
from sfe import audit, db
from sfe.audit import audit_log
from sfe.cli import main
from sfe.settings import Settings
from simulator.app import RunningSimulator
from tests.databases import scratch_database
from tests.projections.test_salesforce_sink import (
    RunningSink,
    create_leads,
    prefix,
    results,
    score_commands,
    send,
    sim,
)
from tests.projections.test_salesforce_sink import (
    auth_for as sim_auth,
)

pytestmark = pytest.mark.integration

__all__ = ["prefix", "sim"]  # the fixtures, shared with the sink's tests


@pytest.fixture
def database(stack: Settings) -> Iterator[str]:
    with scratch_database(stack) as url:
        yield url


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    engine = create_engine(database)
    yield engine
    engine.dispose()


def append(engine: Engine, count: int, action: str = "admin.test", start: int = 0) -> None:
    """``count`` entries, one transaction each."""
    for i in range(start, start + count):
        with engine.begin() as connection:
            audit.record(connection, action, f"subject-{i}", {"i": i, "ratio": i / 3})


def tamper(engine: Engine, *statements: str) -> None:
    """Run ``statements`` with the append-only triggers off, as the table owner could."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        connection.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        for statement in statements:
            connection.execute(text(statement))
        connection.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        connection.execute(text("ALTER TABLE audit_head ENABLE TRIGGER USER"))


def verify(engine: Engine, chunk_size: int = 5000) -> audit.VerifyReport:
    with engine.connect() as connection:
        return audit.verify(connection, chunk_size=chunk_size)


def chain(connection: Connection) -> list[tuple[int, str, str]]:
    rows = connection.execute(
        select(audit_log.c.seq, audit_log.c.prev_hash, audit_log.c.hash).order_by(audit_log.c.seq)
    )
    return [(int(seq), prev, digest) for seq, prev, digest in rows]


def test_appends_form_a_chain_that_verifies(engine: Engine) -> None:
    with engine.begin() as connection:
        first = audit.record(
            connection, "salesforce.write", "salesforce", {"b": [1, 2.5], "a": "é"}, actor="me"
        )
    append(engine, 4)
    with engine.connect() as connection:
        links = chain(connection)
        assert audit.head(connection) == (5, links[-1][2])
    assert first.seq == 1 and first.prev_hash == audit.GENESIS_HASH and first.actor == "me"
    assert first.details == {"a": "é", "b": [1, 2.5]}
    assert [seq for seq, _, _ in links] == [1, 2, 3, 4, 5]
    assert all(links[i][1] == links[i - 1][2] for i in range(1, 5))
    report = verify(engine)
    assert (report.ok, report.entries, report.head_seq) == (True, 5, 5)
    assert report.line() == f"audit trail intact: 5 entries, head {links[-1][2]}"


def test_a_long_chain_verifies_across_cursor_chunks(engine: Engine) -> None:
    with engine.begin() as connection:
        for i in range(700):
            audit.record(connection, "replay.rebuild", "postgres", {"i": i})
    report = verify(engine, chunk_size=64)
    assert (report.ok, report.entries, report.head_seq) == (True, 700, 700)
    tamper(engine, "UPDATE audit_log SET subject = 'other' WHERE seq = 650")
    report = verify(engine, chunk_size=64)
    assert (report.ok, report.broken_seq, report.entries) == (False, 650, 649)


def test_an_edited_entry_is_found_by_its_seq(engine: Engine) -> None:
    append(engine, 5)
    tamper(engine, """UPDATE audit_log SET details = '{"i": 99}' WHERE seq = 3""")
    report = verify(engine)
    assert (report.ok, report.broken_seq) == (False, 3)
    assert report.reason == "content does not match its hash (entry edited)"
    assert report.line().startswith("audit trail BROKEN at seq 3: ")


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(engine: Engine) -> None:
    append(engine, 5)
    with engine.connect() as connection:
        row = connection.execute(select(audit_log).where(audit_log.c.seq == 3)).one()
    forged = audit.entry_hash(
        3, row.at, row.actor, row.action, row.subject, {"i": 99}, row.prev_hash
    )
    tamper(
        engine,
        f"""UPDATE audit_log SET details = '{{"i": 99}}', hash = '{forged}' WHERE seq = 3""",
    )
    report = verify(engine)
    assert (report.ok, report.broken_seq) == (False, 4)
    assert report.reason is not None and report.reason.startswith("prev_hash does not match")


def test_a_deleted_middle_entry_is_found(engine: Engine) -> None:
    append(engine, 5)
    tamper(engine, "DELETE FROM audit_log WHERE seq = 3")
    report = verify(engine)
    assert (report.ok, report.broken_seq, report.entries) == (False, 3, 2)
    assert report.reason == "entries 3 missing (deleted); chain resumes at 4"


def test_a_deleted_tail_is_found_through_the_head(engine: Engine) -> None:
    append(engine, 5)
    tamper(engine, "DELETE FROM audit_log WHERE seq >= 4")
    report = verify(engine)
    assert (report.ok, report.broken_seq, report.entries) == (False, 4, 3)
    assert report.reason == "entries 4..5 missing at the end (the head is at 5)"
    # The next append continues from the head, so the gap stays visible.
    append(engine, 1)
    assert verify(engine).broken_seq == 4


def test_a_deleted_head_row_is_reported_and_stops_appends(engine: Engine) -> None:
    append(engine, 2)
    tamper(engine, "DELETE FROM audit_head")
    report = verify(engine)
    assert (report.ok, report.reason) == (False, "audit_head has no row (deleted)")
    with pytest.raises(audit.AuditError), engine.begin() as connection:
        audit.record(connection, "admin.test", "x", {})


def test_concurrent_appenders_make_one_unbroken_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            append(engine, 25, action=f"admin.thread{n}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with engine.connect() as connection:
        links = chain(connection)
        per_action: dict[str, int] = dict(
            connection.execute(
                select(audit_log.c.action, func.count()).group_by(audit_log.c.action)
            ).all()
        )
    assert [seq for seq, _, _ in links] == list(range(1, 151))
    assert per_action == {f"admin.thread{n}": 25 for n in range(6)}
    report = verify(engine)
    assert (report.ok, report.entries) == (True, 150)


def test_an_audited_effect_rolls_back_with_its_entry(engine: Engine) -> None:
    append(engine, 1)
    with pytest.raises(RuntimeError), engine.begin() as connection:
        audit.record(connection, "privacy.erase", "Lead/00Q000000000001", {})
        raise RuntimeError("the effect failed")
    append(engine, 1, start=1)
    with engine.connect() as connection:
        assert [seq for seq, _, _ in chain(connection)] == [1, 2]
    assert verify(engine).ok


def test_triggers_refuse_updates_deletes_and_a_head_moved_back(engine: Engine) -> None:
    append(engine, 3)
    refused = [
        "UPDATE audit_log SET subject = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
        "UPDATE audit_head SET seq = 2",
        "DELETE FROM audit_head",
        f"INSERT INTO audit_anchor VALUES (1, 1, '{audit.GENESIS_HASH}', now())",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match=r"refused|only advances"), engine.begin() as c:
            c.execute(text(statement))
    with engine.connect() as connection:
        assert len(chain(connection)) == 3
    assert verify(engine).ok


def test_prune_keeps_the_chain_verifiable_and_is_audited(engine: Engine) -> None:
    append(engine, 3)
    cutoff = datetime.now(UTC)
    append(engine, 2, start=3)
    with engine.connect() as connection:
        third_hash = chain(connection)[2][2]
    with engine.begin() as connection:
        pruned = audit.prune(connection, cutoff, actor="ops")
    assert (pruned.deleted, pruned.anchor_seq, pruned.anchor_hash) == (3, 3, third_hash)
    assert (pruned.entry.seq, pruned.entry.action, pruned.entry.actor) == (6, "audit.prune", "ops")
    assert pruned.entry.details["anchor_seq"] == 3 and pruned.entry.details["deleted"] == 3
    with engine.connect() as connection:
        assert [seq for seq, _, _ in chain(connection)] == [4, 5, 6]
        assert audit.anchor(connection) == (3, third_hash)
    report = verify(engine)
    assert (report.ok, report.entries, report.anchor_seq, report.head_seq) == (True, 3, 3, 6)
    # Everything older than now: the whole chain goes, the prune entry stays.
    with engine.begin() as connection:
        again = audit.prune(connection, datetime.now(UTC))
    assert (again.deleted, again.anchor_seq, again.entry.seq) == (3, 6, 7)
    assert verify(engine).ok
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'x' WHERE seq = 7"))


def test_a_forged_anchor_hiding_deleted_entries_is_found(engine: Engine) -> None:
    append(engine, 1)
    cutoff = datetime.now(UTC)
    append(engine, 2, start=1)
    with engine.begin() as connection:
        assert audit.prune(connection, cutoff).anchor_seq == 1
    with engine.connect() as connection:
        second_hash = chain(connection)[0][2]
    # The attacker removes entry 2 and moves the anchor over it: every link still holds.
    tamper(engine, "DELETE FROM audit_log WHERE seq = 2")
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL sfe.audit_prune = 'on'"))
        connection.execute(text(f"UPDATE audit_anchor SET seq = 2, hash = '{second_hash}'"))
    report = verify(engine)
    assert (report.ok, report.broken_seq, report.anchor_seq) == (False, 3, 2)
    assert report.reason == "the anchor (seq 2) is not the one the last audit.prune recorded"


def test_migration_downgrades_and_upgrades(stack: Settings, database: str) -> None:
    settings = stack.model_copy(update={"database_url": SecretStr(database)})
    db.downgrade(settings, "0002")
    engine = create_engine(database)
    try:
        assert "audit_log" not in inspect(engine).get_table_names()
        db.upgrade(settings)
        assert {"audit_log", "audit_head", "audit_anchor"} <= set(inspect(engine).get_table_names())
        append(engine, 2)
        assert verify(engine).ok
    finally:
        engine.dispose()


def test_cli_verify_head_list_and_prune(stack: Settings, database: str, engine: Engine) -> None:
    append(engine, 3, action="replay.rebuild")
    append(engine, 1, action="admin.user", start=3)
    runner = CliRunner()
    env = {"SFE_DATABASE_URL": database}

    ok = runner.invoke(main, ["audit", "verify"], env=env)
    with engine.connect() as connection:
        head = audit.head(connection)
    assert head is not None
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == f"audit trail intact: 4 entries, head {head[1]}"
    shown = runner.invoke(main, ["audit", "head"], env=env)
    assert shown.output.strip() == f"4 {head[1]}"
    listed = runner.invoke(main, ["audit", "list", "--limit", "2", "--action", "replay.*"], env=env)
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == ["3", "2"]

    pruned = runner.invoke(main, ["audit", "prune"], env={**env, "SFE_AUDIT_RETENTION_DAYS": "1"})
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output.startswith("pruned 0 entries older than 1 days")
    bad = runner.invoke(main, ["audit", "prune"], env={**env, "SFE_AUDIT_RETENTION_DAYS": "0"})
    assert bad.exit_code == 2 and "SFE_AUDIT_RETENTION_DAYS" in bad.output

    tamper(engine, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
    broken = runner.invoke(main, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "audit trail BROKEN at seq 2: content does not match its hash" in broken.output


def test_the_sink_appends_one_entry_per_batch_it_handled(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    from simple_salesforce import Salesforce

    from streams.salesforce.rest import connect

    sf: Salesforce = connect(sim_auth(sim))
    leads = create_leads(sf, 120)
    commands = score_commands(leads)
    send(stack, prefix, commands)
    sink = RunningSink(stack, engine, sim, prefix, name=f"audit-{prefix}")
    used = sim.state.budget.used
    with sink:
        first = results(stack, prefix, len(commands))
        calls = sim.state.budget.used - used
        assert {r.outcome for r in first} == {CommandOutcome.APPLIED}
        with engine.connect() as connection:
            written = list(audit.entries(connection, limit=100, action=AUDIT_ACTION))
        # The same commands again: answered from memory, no effect, no entry.
        send(stack, prefix, commands[:10])
        results(stack, prefix, len(commands) + 10)
    with engine.connect() as connection:
        after = list(audit.entries(connection, limit=100, action=AUDIT_ACTION))
    assert len(after) == len(written) >= 1
    assert {e.subject for e in written} == {f"audit-{prefix}"}
    assert all(e.actor.startswith(f"sfe sink audit-{prefix}@") for e in written)
    assert sum(e.details["outcomes"]["Lead"]["APPLIED"] for e in written) == 120
    assert sum(e.details["api_calls"] for e in written) == calls
    assert sum(e.details["field_writes"] for e in written) == 600
    ids: list[str] = []
    for entry in written:
        listed = entry.details["command_ids"]
        if isinstance(listed, list):
            ids.extend(listed)
        else:
            assert listed["count"] > AUDIT_MAX_IDS and len(listed["sha256"]) == 64
            ids.extend(["?"] * listed["count"])
    assert len(ids) == 120
    if len(written) == 1:  # one batch: its digest names exactly these commands
        import hashlib

        expected = hashlib.sha256("\n".join(sorted(c.id for c in commands)).encode()).hexdigest()
        assert written[0].details["command_ids"] == {"count": 120, "sha256": expected}
    report = verify(engine)
    assert (report.ok, report.entries) == (True, len(written))
