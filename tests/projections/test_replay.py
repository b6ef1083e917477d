"""`sfe replay --projection postgres`: rebuild beside the live tables, swap, compare hashes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from projections.postgres import (
    PostgresProjection,
    Rows,
    merge_runs,
    prediction_row,
    sync_log_row,
    workflow_row,
)
from projections.replay import (
    REBUILD_LOCK_KEY,
    STAGING_SUFFIX,
    Rebuild,
    RebuildConflict,
    ReplayInterrupted,
    StagingWriter,
    content_hash,
    pending_rebuild,
)
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
from sfe import audit
from sfe.cli import main
from tests.projections.test_postgres import (
    RUN,
    T0,
    TABLES,
    Env,
    drain,
    env,
    prediction,
    produce,
    recorded,
    result,
    rows,
    transition,
)

__all__ = ["env"]  # the fixture, shared with the projection tests

pytestmark = pytest.mark.integration


def history(count: int) -> list[tuple[str, Event | bytes]]:
    """A mixed log: results, predictions, workflow runs, an undecodable record."""
    items: list[tuple[str, Event | bytes]] = [*RUN, ("predictions", b"\x07garbage")]
    for n in range(count):
        items.append(("command.results", result(n)))
        items.append(("predictions", prediction(n, score=(n % 97) / 97)))
        run = f"onb-{n % 40}"
        items.append(("workflow.events", transition(run, n, "provisioning", n // 40, None)))
    return items


def sfe(env: Env, *args: str) -> str:
    return invoke(env, *args)[0]


def invoke(env: Env, *args: str) -> tuple[str, str]:
    """Run ``sfe`` in this process; its stdout and stderr."""
    outcome = CliRunner().invoke(main, list(args), env=env.cli_env(), catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout.strip(), outcome.stderr


def project_everything(env: Env, count: int) -> None:
    runner = env.runner(batch_size=300)
    try:
        assert drain(runner, count) == count
    finally:
        runner.close()


def indexes(env: Env) -> list[tuple[object, ...]]:
    return rows(
        env.engine,
        "SELECT tablename, indexname FROM pg_indexes WHERE tablename IN "
        "('sync_log', 'ml_predictions', 'workflow_executions') ORDER BY 1, 2",
    )


def test_drop_the_tables_replay_from_earliest_and_get_the_live_hash(env: Env) -> None:
    items = history(600)
    produce(env, items)
    project_everything(env, len(items))
    live = sfe(env, "projection", "hash")
    live_indexes = indexes(env)
    assert "sync_log=600" in live and "ml_predictions=600" in live

    with env.engine.begin() as connection:
        for table in TABLES:
            connection.execute(text(f"DROP TABLE {table}"))
        connection.execute(text("DELETE FROM projection_offsets"))
    replay = ("replay", "--projection", "postgres", "--from", "earliest", "--name", env.name)
    printed, progress = invoke(env, *replay, "--batch-size", "500")
    assert printed == live
    assert f"replay-{env.name}: {len(items):,}/{len(items):,} records (100.0%)" in progress
    assert "/s, ETA 0s" in progress
    assert sfe(env, "projection", "hash") == live
    assert recorded(env) == len(items)

    # A second rebuild swaps over the live tables and keeps their index and sequence names.
    assert sfe(env, "replay", "--projection", "postgres", "--name", env.name) == live
    assert indexes(env) == live_indexes
    with env.engine.begin() as connection:
        connection.execute(text("INSERT INTO sync_log (event_id) VALUES ('after-the-swap')"))
        staging = connection.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%__rebuild'")
        ).scalar_one()
    assert staging == 0
    # Both rebuilds are in the audit trail, which verifies.
    assert (
        rows(
            env.engine,
            "SELECT subject, details->>'records' FROM audit_log "
            "WHERE action = 'replay.rebuild' ORDER BY seq",
        )
        == [(env.name, str(len(items)))] * 2
    )
    with env.engine.connect() as connection:
        assert audit.verify(connection).ok


def test_replay_from_a_time_keeps_only_the_later_records(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(10)])
    project_everything(env, 10)
    after = sfe(
        env,
        "replay",
        "--projection",
        "postgres",
        "--from",
        "2999-01-01T00:00:00",
        "--name",
        env.name,
    )
    assert "ml_predictions=0" in after
    # The positions stay where the live projection was: nothing is projected twice.
    assert recorded(env) == 10


def test_the_swap_catches_up_with_what_the_live_projection_applied_meanwhile(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(200)])
    rebuild = Rebuild(
        env.engine,
        env.settings.kafka_bootstrap,
        env.projection(STAGING_SUFFIX),
        batch_size=100,
    )
    original = rebuild._consume_to_end

    def consume_then_live_moves_on(stop: threading.Event) -> int:
        consumed = original(stop)
        produce(env, [("predictions", prediction(n)) for n in range(200, 260)])
        project_everything(env, 260)  # the live projection runs past the rebuild's end
        return consumed

    rebuild._consume_to_end = consume_then_live_moves_on  # type: ignore[method-assign]
    outcome = rebuild.run(threading.Event())
    assert outcome.rows["ml_predictions"] == 260
    assert rows(env.engine, "SELECT count(DISTINCT event_id) FROM ml_predictions") == [(260,)]


def test_an_interrupted_replay_leaves_the_live_tables_alone(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(20)])
    project_everything(env, 20)
    before = sfe(env, "projection", "hash")
    stop = threading.Event()
    stop.set()
    projection: PostgresProjection = env.projection(STAGING_SUFFIX)
    with pytest.raises(ReplayInterrupted):
        Rebuild(env.engine, env.settings.kafka_bootstrap, projection).run(stop)
    assert sfe(env, "projection", "hash") == before
    assert not readers_alive(), "a stopped rebuild leaves no reader process behind"
    with env.engine.connect() as connection:
        pending = pending_rebuild(connection)
    assert pending is not None and (pending.projection, pending.records) == (env.name, 0)


def test_an_interrupted_replay_resumes_after_its_last_committed_batch(env: Env) -> None:
    items = history(300)
    produce(env, items)
    project_everything(env, len(items))
    live = sfe(env, "projection", "hash")
    with env.engine.begin() as connection:
        connection.execute(text("DELETE FROM ml_predictions"))  # the rebuild must bring it back

    stop = threading.Event()
    first = Rebuild(
        env.engine,
        env.settings.kafka_bootstrap,
        env.projection(STAGING_SUFFIX),
        batch_size=100,
        progress=lambda done, total: stop.set(),  # after the first committed batch
    )
    with pytest.raises(ReplayInterrupted):
        first.run(stop)
    assert not readers_alive()
    with env.engine.connect() as connection:
        pending = pending_rebuild(connection)
        staged = sum(
            connection.execute(text(f"SELECT count(*) FROM {table}{STAGING_SUFFIX}")).scalar_one()
            for table in TABLES
        )
    assert pending is not None and 0 < pending.records < len(items)
    assert sum(offset + 1 for offset in pending.positions.values()) == pending.records
    assert staged > 0
    assert rows(env.engine, "SELECT count(*) FROM ml_predictions") == [(0,)], "live untouched"

    # A plain rebuild refuses to throw the interrupted one away, and says what to type.
    replay = ("replay", "--projection", "postgres", "--name", env.name)
    refused = CliRunner().invoke(main, list(replay), env=env.cli_env())
    assert refused.exit_code == 2
    assert f"holds {pending.records:,} records" in refused.stderr
    assert "--resume" in refused.stderr and "--restart" in refused.stderr
    assert "--from" in invoke_failing(env, *replay, "--resume", "--from", "earliest")

    printed, progress = invoke(env, *replay, "--resume")
    assert printed == live
    assert f"{len(items):,} records ({pending.records:,} of them before the resume)" in progress
    assert recorded(env) == len(items)
    with env.engine.connect() as connection:
        assert pending_rebuild(connection) is None
    refused = CliRunner().invoke(main, [*replay, "--resume"], env=env.cli_env())
    assert refused.exit_code == 2 and "no interrupted rebuild" in refused.stderr


def test_a_killed_replay_process_resumes_to_the_live_hash(env: Env) -> None:
    items = history(1500)
    produce(env, items)
    project_everything(env, len(items))
    live = sfe(env, "projection", "hash")
    replay = ["replay", "--projection", "postgres", "--name", env.name, "--batch-size", "50"]
    process = subprocess.Popen(
        [sys.executable, "-m", "sfe.cli", *replay],
        env=env.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the first progress line: a batch has committed
            if line.startswith(f"replay-{env.name}: ") and "records" in line:
                break
        readers = children(process.pid)
        assert readers, "the rebuild reads in reader processes"
        process.kill()
        process.wait(30)
        # The readers die with it, killed as it was.
        deadline = time.monotonic() + 30
        while (alive := [pid for pid in readers if running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"reader processes {alive} outlived the killed rebuild"
    finally:
        if process.poll() is None:
            process.kill()
    with env.engine.connect() as connection:
        pending = pending_rebuild(connection)
    assert pending is not None and 0 < pending.records < len(items), "killed mid-rebuild"

    printed, progress = invoke(env, *replay, "--resume")
    assert printed == live
    assert f"{len(items):,} records ({pending.records:,} of them before the resume)" in progress
    assert recorded(env) == len(items)


def readers_alive() -> list[str]:
    """The rebuild reader processes of this process still running."""
    return [p.name for p in multiprocessing.active_children() if p.name.startswith("rebuild-")]


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_restart_discards_the_interrupted_rebuild(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(30)])
    project_everything(env, 30)
    live = sfe(env, "projection", "hash")
    stop = threading.Event()
    stop.set()
    with pytest.raises(ReplayInterrupted):
        Rebuild(env.engine, env.settings.kafka_bootstrap, env.projection(STAGING_SUFFIX)).run(stop)
    replay = ("replay", "--projection", "postgres", "--name", env.name)
    assert sfe(env, *replay, "--restart") == live


def test_one_rebuild_at_a_time(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(10)])
    with env.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": REBUILD_LOCK_KEY})
        with pytest.raises(RebuildConflict, match="another rebuild is running"):
            Rebuild(env.engine, env.settings.kafka_bootstrap, env.projection(STAGING_SUFFIX)).run(
                threading.Event()
            )


def invoke_failing(env: Env, *args: str) -> str:
    """Run ``sfe`` expecting a usage error; its stderr."""
    outcome = CliRunner().invoke(main, list(args), env=env.cli_env())
    assert outcome.exit_code == 2, outcome.output
    return outcome.stderr


def tricky_batches() -> list[list[tuple[str, Event]]]:
    """Two batches of values that COPY must write exactly as the statements do."""
    odd = 'quote" back\\slash \\N tab\tnew\nline Zürich ✓ 🚀'
    scored = [
        PredictionMade(
            id=f"tricky-{n}",
            source="agents.lead_qualification",
            subject=f"00Q{n:015d}",
            time=T0 + timedelta(seconds=n, microseconds=123456 * n),
            purpose=odd[:50],
            entity="Lead",
            model=ModelRef(name="lead", version="v\\1"),
            score=score,
            factors=(
                Factor(name=odd, contribution=1e-05),
                Factor(name="", contribution=-0.1),
                Factor(name='{"json": [1]}', contribution=2.5e300),
            )[: n % 4],
        )
        for n, score in enumerate([0.005, 0.125, 0.00125, 1.0, 0.0, 0.87654, 0.994999])
    ]
    first_batch: list[tuple[str, Event]] = [
        *(("predictions", event) for event in scored),
        # The same id again, another score: the first row stays.
        ("predictions", replace(scored[0], score=0.5)),
        ("command.results", result(1, operation=None)),
        (
            "command.results",
            result(
                2,
                CommandOutcome.REJECTED,
                target="Task/new",
                operation="CREATE",
                errors=(
                    SalesforceError(status_code="A", message=odd, fields=("F\\1", "Ö")),
                    SalesforceError(status_code="B", message=""),
                ),
            ),
        ),
        ("command.results", result(3, target="Lead/", salesforce_id="\\N")),
        ("workflow.events", transition("onb-x", 0, "provisioning", 1, None)),
        ("workflow.events", transition("onb-x", 1, "completed", 3, "provisioning")),
        ("workflow.events", replace(transition("onb-y", 0, "started", 0, None), attributes={})),
    ]
    second_batch: list[tuple[str, Event]] = [
        # Read twice: already in the table from the first batch (the fallback path).
        ("predictions", replace(scored[1], score=0.9)),
        ("predictions", prediction(99)),
        ("command.results", result(1)),
        # A finished run is not reopened; an open one moves on, keeping its start.
        ("workflow.events", transition("onb-x", 2, "provisioning", 2, "completed")),
        ("workflow.events", transition("onb-y", 3, "Timed_Out", 2, "started")),
        ("workflow.events", replace(transition("onb-z", 0, "started", 0, None), attributes={})),
    ]
    return [first_batch, second_batch]


def test_copy_into_staging_writes_what_the_projection_statements_write(env: Env) -> None:
    by_copy, by_statements = env.projection("__copy"), env.projection("__statements")
    with env.engine.begin() as connection:
        for table in TABLES:
            for suffix in ("__copy", "__statements"):
                connection.execute(
                    text(f"CREATE TABLE {table}{suffix} (LIKE {table} INCLUDING ALL)")
                )
    writer = StagingWriter(by_copy)
    for batch in tricky_batches():
        made = Rows([], [], [])
        for _, event in batch:
            if isinstance(event, PredictionMade):
                made.predictions.append(prediction_row(event))
            elif isinstance(event, WorkflowAdvanced):
                made.runs.append(workflow_row(event))
            elif isinstance(event, CommandExecuted):
                made.syncs.append(sync_log_row(event))
        with env.engine.begin() as connection:
            writer.write(connection, made)
        with env.engine.begin() as connection:  # what PostgresProjection.project executes
            connection.execute(by_statements._insert(by_statements.sync_log), made.syncs)
            connection.execute(
                by_statements._insert(by_statements.ml_predictions), made.predictions
            )
            connection.execute(by_statements._upsert_runs(), merge_runs(made.runs))

    with env.engine.connect() as connection:
        copied = content_hash(connection, "__copy")
        stated = content_hash(connection, "__statements")
    assert copied == stated
    assert copied[1] == {"sync_log": 3, "ml_predictions": 8, "workflow_executions": 3}
    assert rows(
        env.engine,
        "SELECT event_id, probability, jsonb_array_length(factors) FROM ml_predictions__copy "
        "ORDER BY event_id",
    ) == [
        ("prediction-99", Decimal("87.65"), 2),
        ("tricky-0", Decimal("0.50"), 0),
        ("tricky-1", Decimal("12.50"), 1),
        ("tricky-2", Decimal("0.13"), 2),
        ("tricky-3", Decimal("100.00"), 3),
        ("tricky-4", Decimal("0.00"), 0),
        ("tricky-5", Decimal("87.65"), 1),
        ("tricky-6", Decimal("99.50"), 2),
    ]
    odd = 'quote" back\\slash \\N tab\tnew\nline Zürich ✓ 🚀'
    assert rows(
        env.engine, "SELECT factors->0->>'name' FROM ml_predictions__copy WHERE event_id='tricky-2'"
    ) == [(odd,)]
    assert rows(
        env.engine,
        "SELECT event_id, sf_object, sf_record_id, operation, status, error_message "
        "FROM sync_log__copy ORDER BY event_id",
    ) == [
        ("result-1", "Lead", "00Q000000000000001", None, "applied", None),
        ("result-2", "Task", None, "create", "rejected", f"A: {odd} (fields: F\\1, Ö); B: "),
        ("result-3", "Lead", None, "update", "applied", None),
    ]
    assert rows(
        env.engine,
        "SELECT event_id, record_id, status, steps_completed, total_steps, "
        "completed_at IS NOT NULL FROM workflow_executions__copy ORDER BY event_id",
    ) == [
        ("onb-x", "001000000000001AAA", "completed", 3, 3, True),
        ("onb-y", "001000000000001AAA", "Timed_Out", 2, 3, True),
        ("onb-z", None, "started", 0, None, False),
    ]
