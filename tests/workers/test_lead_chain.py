"""The whole lead flow as processes: simulator -> ingest -> worker -> sink -> simulator.

Leads created in the org simulator stream into Kafka (`sfe ingest`), are qualified
(`sfe worker --role leads`) and written back (`sfe sink salesforce`). The leads end
with their AI fields in the org and the high-value ones with their follow-up task;
the write-backs come back through CDC as echoes and start nothing.

The acceptance run adds the PostgreSQL projection (`sfe projection run`) and a scratch
database: 10,000 leads, the worker killed with SIGKILL in the middle and restarted, and
every lead ends with exactly one `ml_predictions` row and its score in the org, for at
most 60 API calls of the sink.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from schema_registry.events import LeadRoute, LeadScored, RecordChanged
from sfe.settings import Settings
from simulator import load
from tests.databases import scratch_database
from tests.ingest.test_ingest_process import SFE, client, collection, environment  # noqa: F401
from tests.ports import free_port
from tests.workers.support import WorkerProcess, read_events, wait_for_samples

pytestmark = pytest.mark.integration


@pytest.fixture
def chain(
    environment: dict[str, str],  # noqa: F811
    registry_root: Path,
    trained: dict[str, object],
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    env = {
        **environment,
        "SFE_MODEL_DIR": str(registry_root),
        "SFE_SINK_NAME": f"test-{uuid.uuid4().hex[:8]}",
        "SFE_LEAD_EINSTEIN_WEIGHT": "1.0",
        "SFE_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **extra: str) -> None:
        log = (tmp_path / f"{args[0]}-{len(processes)}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [SFE, *args], env={**os.environ, **env, **extra}, stdout=log, stderr=log
            )
        )

    yield_value = dict(env)
    start("ingest", "--channel", "/data/LeadChangeEvent", "--start-at", "all")
    user = client(env).query("SELECT Id FROM User")["records"][0]["Id"]
    start("worker", "--role", "leads", SFE_LEAD_SENIOR_AE_QUEUE=user)
    start("sink", "salesforce")
    yield_value["user"] = user
    try:
        yield yield_value
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_created_leads_end_scored_routed_and_echoes_start_nothing(
    stack: Settings, chain: dict[str, str]
) -> None:
    sf = client(chain)
    prefix = chain["SFE_TOPIC_PREFIX"]
    einstein = [95.0, 85.0, 65.0, 55.0, 20.0, 10.0]
    records = [
        {
            "attributes": {"type": "Lead"},
            "LastName": f"Chain-{i}",
            "Company": f"Chain Works {i}",
            "Email": f"chain{i}@works.example.com",
            "Title": "Director of Operations",
            "Industry": "Technology",
            "NumberOfEmployees": 400,
            "AnnualRevenue": 50_000_000,
            "Einstein_Lead_Score__c": score,
        }
        for i, score in enumerate(einstein)
    ]
    ids = [item["id"] for item in collection(sf, "POST", records)]

    soql = "SELECT Id, AI_Enhanced_Score__c, AI_Lead_Route__c, OwnerId FROM Lead WHERE Id IN ({})".format(
        ", ".join(f"'{i}'" for i in ids)
    )
    deadline = time.monotonic() + 150
    leads: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        leads = {r["Id"]: r for r in sf.query(soql)["records"]}
        if all(r["AI_Enhanced_Score__c"] is not None for r in leads.values()):
            break
        time.sleep(1)
    for lead_id, score in zip(ids, einstein, strict=True):
        assert leads[lead_id]["AI_Enhanced_Score__c"] == score
    assert [leads[i]["AI_Lead_Route__c"] for i in ids] == [
        "Senior AE",
        "Senior AE",
        "Nurture",
        "Nurture",
        "MQL",
        "MQL",
    ]
    assert {leads[i]["OwnerId"] for i in ids[:2]} == {chain["user"]}
    tasks = sf.query(
        "SELECT WhoId, Subject, ActivityDate FROM Task WHERE WhoId IN ('{}')".format(
            "', '".join(ids)
        )
    )["records"]
    assert sorted(t["WhoId"] for t in tasks) == sorted(ids[:2])

    # The write-backs came back through CDC, flagged as echoes, and were not qualified again.
    changes = read_events(
        stack,
        prefix,
        "sf.cdc.Lead",
        lambda e: sum(1 for c in e if isinstance(c, RecordChanged) and c.is_echo) >= len(ids),
        timeout=60,
    )
    echoes = [c for c in changes if isinstance(c, RecordChanged) and c.is_echo]
    assert {c.subject for c in echoes} >= set(ids)
    decisions = read_events(stack, prefix, "decisions.leads", lambda e: len(e) >= 6, settle=5)
    assert len(decisions) == len(ids)
    routes = {d.subject: d.route for d in decisions if isinstance(d, LeadScored)}
    assert routes[ids[0]] is LeadRoute.SENIOR_AE and routes[ids[-1]] is LeadRoute.MQL


#: Leads of the acceptance run, created 200 per sObject Collections call.
LEADS = 10_000
#: The most API calls the sink may spend writing the scores of those leads back.
SINK_CALL_BUDGET = 60


def _appended(consumer: Consumer, topic: str) -> int:
    """The sum of ``topic``'s high watermarks: records appended, committed or not."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
    )


def _sim_status(env: dict[str, str]) -> dict[str, Any]:
    """``GET /_sim/status``: an admin call outside ``/services/data``, so it costs no API call."""
    response = requests.get(
        env["SFE_SF_LOGIN_URL"] + "/_sim/status", verify=env["SFE_SF_CA_BUNDLE"], timeout=10
    )
    response.raise_for_status()
    return dict(response.json())


def _wait(
    what: str,
    condition: Callable[[], bool],
    timeout: float,
    running: Sequence[WorkerProcess],
    every: float = 0.5,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` when ``timeout`` passes.

    Fails at once when one of the ``running`` processes has exited.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        for process in running:
            code = process.process.poll()
            if code is not None:
                pytest.fail(f"{process.log.stem} exited ({code}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _scalar(engine: Engine, query: str, **params: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(query), params).scalar_one())


def test_ten_thousand_leads_survive_a_killed_worker_exactly_once(
    stack: Settings,
    environment: dict[str, str],  # noqa: F811
    registry_root: Path,
    trained: dict[str, object],
    tmp_path: Path,
) -> None:
    """The issue's acceptance criterion, end to end with real processes.

    SIGKILL the worker in the middle of 10,000 leads, restart it: every lead has exactly
    one ``ml_predictions`` row and its score in the org, and the simulator's API counter
    shows at most 60 calls for those updates. The projection and the sink write into a
    scratch database, not the shared ``sfe`` one.
    """
    sink_name = f"test-{uuid.uuid4().hex[:8]}"
    sink_metrics = free_port()
    processes: dict[str, WorkerProcess] = {}
    started = time.monotonic()
    with scratch_database(stack) as database_url:
        env = {
            **environment,
            "SFE_DATABASE_URL": database_url,
            "SFE_MODEL_DIR": str(registry_root),
            "SFE_SINK_NAME": sink_name,
            # No lead can score strictly above 100, so none routes to a senior AE: every
            # Salesforce command is the lead's one update, and no Task create shares the
            # sink's call count. Nurture and MQL routes still split the leads.
            "SFE_LEAD_SENIOR_AE_ABOVE": "100",
            "SFE_LOG_LEVEL": "WARNING",
        }

        def start(key: str, *args: str, **extra: str) -> WorkerProcess:
            processes[key] = WorkerProcess(args, {**env, **extra}, tmp_path / f"{key}.log")
            return processes[key]

        engine = create_engine(database_url)
        try:
            start("ingest", "ingest", "--channel", "/data/LeadChangeEvent", "--start-at", "all")
            start("projection", "projection", "run", "--name", sink_name)
            # INFO: the sink logs its Bulk API jobs ("bulk job ... for N Lead records").
            start(
                "sink",
                "sink",
                "salesforce",
                SFE_LOG_LEVEL="INFO",
                SFE_METRICS_PORT=str(sink_metrics),
            )
            _run_acceptance(stack, env, engine, processes, start, sink_metrics, started)
        except BaseException:
            for key, process in processes.items():
                print(f"----- {key} ({process.log}) -----\n{process.output()[-6000:]}")
            raise
        finally:
            for process in processes.values():
                process.stop()
            engine.dispose()


def _run_acceptance(
    stack: Settings,
    env: dict[str, str],
    engine: Engine,
    processes: dict[str, WorkerProcess],
    start: Callable[..., WorkerProcess],
    sink_metrics: int,
    started: float,
) -> None:
    """Steps 1-5 of the acceptance run (see the test); ``processes`` are the ones started."""
    prefix = env["SFE_TOPIC_PREFIX"]
    sf = client(env)
    sink = processes["sink"]
    pipeline = [processes["ingest"], processes["projection"], sink]
    # Asks the broker for watermarks only; never joins its (unused) group.
    offsets = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "unused"})

    def phase(name: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {name}")

    with closing(offsets):
        # 1. 10,000 realistic leads (the `sfe sim load` generator: titles, sizes, sources, stacks).
        bodies = load.leads(random.Random(11), LEADS)
        ids: list[str] = []
        for chunk in range(0, LEADS, 200):
            records = [{"attributes": {"type": "Lead"}, **b} for b in bodies[chunk : chunk + 200]]
            ids += [item["id"] for item in collection(sf, "POST", records)]
        assert len(set(ids)) == LEADS
        _wait(
            "the ingestor to append the 10,000 CDC creates",
            lambda: _appended(offsets, prefix + "sf.cdc.Lead") >= LEADS,
            timeout=180,
            running=pipeline,
        )
        phase("10,000 leads created and ingested")

        # 2. The API counter before any decision exists. From here on the test itself makes no
        # /services/data call until the closing reading: it polls Kafka, PostgreSQL and
        # /_sim/status, which the simulator does not count. The worker calls no API; the
        # ingestor reads records by REST only after gap events, and CDC (the creates, the
        # echoes of the sink's writes) arrives by streaming, which is not counted either. So
        # the delta is the sink's calls, or an upper bound of them: the honest reading of
        # "the simulator's API counter". The sink's own metric is printed beside it.
        before = _sim_status(env)["api_usage"]["used"]

        # 3. The worker, killed with SIGKILL once it has appended about a third of the decisions.
        decisions_topic = prefix + "decisions.leads"
        worker = start("worker-1", "worker", "--role", "leads")
        _wait(
            "the first worker to append 3,000 decisions",
            lambda: (
                _appended(offsets, decisions_topic) >= 3000 or worker.process.poll() is not None
            ),
            timeout=180,
            running=pipeline,
            every=0.1,
        )
        assert worker.process.poll() is None, "the first worker exited before it was killed"
        worker.kill()
    committed = [
        d
        for d in read_events(stack, prefix, "decisions.leads", timeout=8)
        if isinstance(d, LeadScored)
    ]
    assert LEADS // 10 <= len(committed) <= LEADS * 9 // 10, (
        f"the kill was not in the middle: {len(committed)} of {LEADS} decisions committed"
    )
    phase(f"worker killed with {len(committed)} decisions committed")
    pipeline.append(start("worker-2", "worker", "--role", "leads"))

    # 4. Until the sink applied an update for every lead and the projection holds a
    # prediction for every lead (both read from the scratch database, no API call).
    applied = "SELECT count(*) FROM salesforce_commands WHERE sink = :sink AND outcome = 'APPLIED'"
    _wait(
        "the sink to apply 10,000 lead updates",
        lambda: _scalar(engine, applied, sink=env["SFE_SINK_NAME"]) >= LEADS,
        timeout=300,
        running=pipeline,
    )
    phase("the sink applied 10,000 updates")
    _wait(
        "10,000 lead predictions in ml_predictions",
        lambda: (
            _scalar(
                engine,
                "SELECT count(DISTINCT account_id) FROM ml_predictions "
                "WHERE prediction_type = 'lead_score'",
            )
            >= LEADS
        ),
        timeout=120,
        running=pipeline,
    )
    phase("10,000 predictions projected")
    time.sleep(3)  # anything late (a duplicate row, a second write) would land now
    after = _sim_status(env)["api_usage"]["used"]
    sink_calls = after - before
    by_endpoint = {
        s.labels["endpoint"]: int(s.value)
        for s in wait_for_samples(sink_metrics, "sfe_salesforce_api_calls", timeout=5)
        if s.name.endswith("_total")
    }
    bulk_jobs = [line for line in sink.output().splitlines() if "bulk job" in line]
    print(
        f"sink calls (simulator counter): {sink_calls}; the sink's own count since its start "
        f"by endpoint: {by_endpoint}; bulk jobs: {len(bulk_jobs)}; "
        f"elapsed {time.monotonic() - started:.0f} s"
    )
    for line in bulk_jobs:
        print(line)

    # 5. Exactly one prediction row per lead, every decision once, every score in the org.
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT account_id, count(*) FROM ml_predictions "
                "WHERE prediction_type = 'lead_score' GROUP BY account_id"
            )
        ).all()
        total = connection.execute(text("SELECT count(*) FROM ml_predictions")).scalar_one()
    counts = {account: int(count) for account, count in rows}
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    assert total == LEADS

    decisions = [
        d
        for d in read_events(
            stack, prefix, "decisions.leads", lambda e: len(e) >= LEADS, timeout=60, settle=3
        )
        if isinstance(d, LeadScored)
    ]
    assert len(decisions) == LEADS
    assert len({d.id for d in decisions}) == LEADS
    enhanced = {d.subject: d.enhanced_score for d in decisions}
    assert set(enhanced) == set(ids)
    assert {d.route for d in decisions} == {LeadRoute.NURTURE, LeadRoute.MQL}

    org = {
        r["Id"]: r["AI_Enhanced_Score__c"]
        for r in sf.query_all("SELECT Id, AI_Enhanced_Score__c FROM Lead")["records"]
    }
    assert set(org) == set(ids)
    wrong = {i: (org[i], enhanced[i]) for i in ids if org[i] != enhanced[i]}
    assert not wrong, f"{len(wrong)} leads hold another score than their decision, e.g. " + str(
        list(wrong.items())[:5]
    )
    assert _sim_status(env)["records"].get("Task", 0) == 0

    assert sink_calls <= SINK_CALL_BUDGET, (
        f"the sink spent {sink_calls} API calls on {LEADS} lead updates "
        f"(by endpoint, since its start: {by_endpoint})"
    )
