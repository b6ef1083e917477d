"""The simulator's additions the soak relies on: client-targeted failures, purge, write counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from simulator.app import RunningSimulator, start_in_thread
from simulator.events import stream_of
from simulator.http.admin import apply_fault
from streams.salesforce.rest import connect
from tests.simulator.conftest import auth_config, sim_config


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    running = start_in_thread(sim_config(tmp_path_factory.mktemp("sim")))
    yield running
    running.stop()


def fault(sim: RunningSimulator, **body: Any) -> Any:
    return sim.call(apply_fault, sim.state, body)


def status(sim: RunningSimulator) -> dict[str, Any]:
    answer = requests.get(f"{sim.url}/_sim/status", verify=sim.state.tls_files.ca_cert, timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def client(sim: RunningSimulator, name: str) -> Salesforce:
    return connect(auth_config(sim, call_options_client=name))


def test_fail_next_for_one_client_spares_the_others(sim: RunningSimulator) -> None:
    pipeline, workload = client(sim, "sfe-pipeline"), client(sim, "workload")
    armed = fault(sim, action="fail_next", count=2, status=503, client="sfe-pipeline")
    assert armed == {"fail_next": 2, "status": 503, "client": "sfe-pipeline"}
    # The workload's calls go through and do not use up the armed failures.
    workload.query("SELECT Id FROM Lead LIMIT 1")
    workload.query("SELECT Id FROM Lead LIMIT 1")
    assert status(sim)["fail_next"] == 2
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as failed:
            pipeline.query("SELECT Id FROM Lead LIMIT 1")
        assert failed.value.status == 503
    assert status(sim)["fail_next"] == 0
    pipeline.query("SELECT Id FROM Lead LIMIT 1")
    fault(sim, action="fail_next", count=1, status=403, client="sfe-pipeline")
    with pytest.raises(SalesforceRefusedRequest) as refused:
        pipeline.query("SELECT Id FROM Lead LIMIT 1")
    assert "REQUEST_LIMIT_EXCEEDED" in str(refused.value)
    # Without a client, any caller gets the failure (unchanged behaviour); clear disarms.
    assert fault(sim, action="fail_next", count=1, status=500) == {"fail_next": 1, "status": 500}
    with pytest.raises(SalesforceGeneralError):
        workload.query("SELECT Id FROM Lead LIMIT 1")
    fault(sim, action="fail_next", count=3, client="sfe-pipeline")
    fault(sim, action="clear")
    pipeline.query("SELECT Id FROM Lead LIMIT 1")
    assert status(sim)["fail_next"] == 0


def test_record_writes_count_updates_that_changed_nothing(sim: RunningSimulator) -> None:
    pipeline, workload = client(sim, "writes-pipeline"), client(sim, "writes-workload")
    lead = workload.Lead.create({"LastName": "Writes", "Company": "Acme"})["id"]
    pipeline.Lead.update(lead, {"Rating": "Hot"})
    pipeline.Lead.update(lead, {"Rating": "Hot"})  # the value it already holds
    pipeline.Lead.update(lead, {"Rating": "Warm"})
    writes = {
        origin.rsplit("client=", 1)[-1]: counts
        for origin, counts in status(sim)["record_writes"].items()
    }
    assert writes["writes-workload"] == {"created": 1}
    assert writes["writes-pipeline"] == {"changed": 2, "unchanged": 1}


def test_purge_events_older_than_expires_every_retained_replay_id(sim: RunningSimulator) -> None:
    sf = client(sim, "purge")
    sf.Lead.create({"LastName": "Purged", "Company": "Acme"})
    bus = sim.state.bus
    stream = stream_of("/data/LeadChangeEvent")
    assert stream is not None
    latest = bus.latest(stream)
    assert latest > 0
    time.sleep(0.05)
    fault(sim, action="purge_events")  # the 72-hour window: nothing goes
    assert bus.purged_through(stream) < latest
    fault(sim, action="purge_events", older_than_seconds=0)
    assert bus.purged_through(stream) == latest
    assert bus.start_position("/data/LeadChangeEvent", latest - 1) is None
