"""The acceptance run of `sfe ingest` as a real process, against `sfe sim serve` and the real broker.

1,000 lead creates and updates; meanwhile the simulator drops the streaming
connection twice, forgets the client once and expires the sessions once, and the
ingestor is killed with SIGKILL and restarted. Every change must appear in Kafka exactly once, in commit
order per record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from schema_registry.codec import Codec
from sfe.settings import Settings
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect, http_session
from tests.kafka_helpers import consume_records, delete_topics_with_prefix
from tests.ports import free_port

pytestmark = pytest.mark.integration

SFE = str(Path(sys.executable).parent / "sfe")
PASSWORD, CLIENT_SECRET = "sfe-local-password", "sfe-local-secret"


@pytest.fixture
def environment(stack: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = dict(
        os.environ,
        SFE_STATE_DIR=str(tmp_path / "state"),
        SFE_SIM_PORT=str(port),
        SFE_SF_LOGIN_URL=f"https://127.0.0.1:{port}",
        SFE_SF_PASSWORD=PASSWORD,
        SFE_SF_CLIENT_SECRET=CLIENT_SECRET,
        SFE_TOPIC_PREFIX=f"test.{uuid.uuid4().hex[:8]}.",
        SFE_METRICS_PORT="0",
        SFE_KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
    )
    simulator = subprocess.Popen([SFE, "sim", "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        ca_file = ""
        for _ in range(10):
            line = simulator.stdout.readline()
            if line.startswith("CA certificate:"):
                ca_file = line.split(":", 1)[1].strip()
                break
        assert ca_file, "the simulator did not announce its CA certificate"
        env["SFE_SF_CA_BUNDLE"] = ca_file
        subprocess.run(
            [SFE, "topics", "ensure", "--prefix", env["SFE_TOPIC_PREFIX"]],
            env=env,
            check=True,
            capture_output=True,
        )
        yield env
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(30)
        delete_topics_with_prefix(stack, env["SFE_TOPIC_PREFIX"])


def start_ingest(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SFE, "ingest", "--channel", "/data/LeadChangeEvent", "--start-at", "all"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fault(env: dict[str, str], action: str) -> None:
    response = requests.post(
        env["SFE_SF_LOGIN_URL"] + "/_sim/faults",
        json={"action": action},
        verify=env["SFE_SF_CA_BUNDLE"],
        timeout=10,
    )
    response.raise_for_status()


def client(env: dict[str, str]) -> Salesforce:
    config = SalesforceAuthConfig(
        login_url=env["SFE_SF_LOGIN_URL"],
        client_id="sfe-local-client",
        client_secret=CLIENT_SECRET,
        username="integration@sfe.local",
        password=PASSWORD,
        ca_bundle=Path(env["SFE_SF_CA_BUNDLE"]),
        call_options_client="workload",
    )
    return connect(config, http_session(config))


def collection(sf: Salesforce, method: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = sf.restful(
        "composite/sobjects", method=method, json={"allOrNone": True, "records": records}
    )
    assert all(item["success"] for item in result), result
    return list(result)


def test_thousand_changes_exactly_once_in_commit_order(
    stack: Settings, environment: dict[str, str]
) -> None:
    env, prefix = environment, environment["SFE_TOPIC_PREFIX"]
    sf = client(env)
    ingest = start_ingest(env)
    final_status: dict[str, str] = {}
    updates_per_record: dict[str, int] = defaultdict(int)
    try:
        lead_ids: list[str] = []
        for batch in range(4):  # 400 creates, 100 per call
            records = [
                {
                    "attributes": {"type": "Lead"},
                    "LastName": f"L{batch}-{i}",
                    "Company": "Acme",
                    "Status": "Open - Not Contacted",
                }
                for i in range(100)
            ]
            lead_ids += [item["id"] for item in collection(sf, "POST", records)]
            if batch == 0:
                fault(env, "drop_connections")
            if batch == 1:
                ingest.send_signal(signal.SIGKILL)
                ingest.wait(30)
                ingest = start_ingest(env)
            if batch == 2:
                fault(env, "forget_clients")
            if batch == 3:
                fault(env, "expire_sessions")  # the next request gets 401::Authentication invalid
        statuses = ["Working - Contacted", "Closed - Converted", "Closed - Not Converted"]
        for round_ in range(3):  # 600 updates: each of 200 leads three times, in order
            for start in range(0, 200, 100):
                chunk = lead_ids[start : start + 100]
                records = [
                    {"attributes": {"type": "Lead"}, "id": lead_id, "Status": statuses[round_]}
                    for lead_id in chunk
                ]
                collection(sf, "PATCH", records)
                for lead_id in chunk:
                    final_status[lead_id] = statuses[round_]
                    updates_per_record[lead_id] += 1
            if round_ == 1:
                fault(env, "drop_connections")

        expected = len(lead_ids) + sum(updates_per_record.values())
        assert expected == 1000
        codec = Codec(topic_prefix=prefix)
        topic = prefix + "sf.cdc.Lead"
        deadline = time.monotonic() + 120
        records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        while time.monotonic() < deadline:
            records = consume_records(stack, topic, expected + 1, timeout=5)
            if len(records) >= expected:
                break
        time.sleep(2)
        records = consume_records(stack, topic, expected + 1, timeout=10)
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(30)

    events = [codec.decode(topic, value, headers) for _, value, headers in records]
    assert len(events) == expected, f"{len(events)} events in Kafka for {expected} changes"
    assert len({event.id for event in events}) == expected
    per_record: dict[str, list[Any]] = defaultdict(list)
    for (
        event
    ) in events:  # consume order is partition order, and a record's events share a partition
        per_record[event.subject].append(event)
    assert set(per_record) == set(lead_ids)
    for lead_id, history in per_record.items():
        assert [e.header.change_type for e in history] == ["CREATE"] + [
            "UPDATE"
        ] * updates_per_record[lead_id]
        commit_numbers = [e.header.commit_number for e in history]
        assert commit_numbers == sorted(commit_numbers) and len(set(commit_numbers)) == len(
            commit_numbers
        )
        if lead_id in final_status:
            assert history[-1].fields["Status"] == final_status[lead_id]
