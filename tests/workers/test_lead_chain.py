"""The whole lead flow as processes: simulator -> ingest -> worker -> sink -> simulator.

Leads created in the org simulator stream into Kafka (`sfe ingest`), are qualified
(`sfe worker --role leads`) and written back (`sfe sink salesforce`). The leads end
with their AI fields in the org and the high-value ones with their follow-up task;
the write-backs come back through CDC as echoes and start nothing.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schema_registry.events import LeadRoute, LeadScored, RecordChanged
from sfe.settings import Settings
from tests.ingest.test_ingest_process import SFE, client, collection, environment  # noqa: F401
from tests.workers.support import read_events

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
