"""`sfe replay --projection postgres`: rebuild beside the live tables, swap, compare hashes."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from projections.postgres import PostgresProjection
from projections.replay import STAGING_SUFFIX, Rebuild, ReplayInterrupted
from schema_registry.events import Event
from sfe.cli import main
from tests.projections.test_postgres import (
    RUN,
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
    assert rows(env.engine, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%rebuild'") == [
        (0,)
    ]
