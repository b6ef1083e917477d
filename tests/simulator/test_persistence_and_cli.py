"""State surviving a restart with a SQLite file, and the `sfe sim` commands as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import requests

from simulator.app import free_port, start_in_thread
from streams.salesforce.rest import connect
from tests.simulator.conftest import auth_config, sim_config


def test_sqlite_file_keeps_records_and_events(tmp_path: Path) -> None:
    config = sim_config(tmp_path, sqlite_file=tmp_path / "org.sqlite3")
    first = start_in_thread(config)
    try:
        sf = connect(auth_config(first))
        kept = sf.Account.create({"Name": "Durable"})["id"]
        sf.Account.update(kept, {"Industry": "Energy"})
        last_replay = first.state.bus.latest("cdc")
    finally:
        first.stop()
    second = start_in_thread(replace(config, port=first.state.config.port))
    try:
        sf = connect(auth_config(second))
        assert sf.Account.get(kept)["Industry"] == "Energy"
        assert second.state.bus.latest("cdc") == last_replay
        retained = second.state.bus.read("/data/AccountChangeEvent", 0, 10)
        assert [e.payload["ChangeEventHeader"]["changeType"] for e in retained] == [
            "CREATE",
            "UPDATE",
        ]
        fresh = sf.Account.create({"Name": "After restart"})["id"]
        assert fresh != kept
        assert second.state.bus.latest("cdc") == last_replay + 1
        assert (
            second.state.org.commit_number
            > retained[-1].payload["ChangeEventHeader"]["commitNumber"]
        )
    finally:
        second.stop()


def test_replay_ids_continue_after_everything_was_purged(tmp_path: Path) -> None:
    config = sim_config(tmp_path, sqlite_file=tmp_path / "org.sqlite3", event_retention_seconds=0.2)
    first = start_in_thread(config)
    try:
        connect(auth_config(first)).Account.create({"Name": "Soon purged"})
        purged = first.state.bus.latest("cdc")
        time.sleep(0.3)
        first.call(first.state.bus.purge)
    finally:
        first.stop()
    second = start_in_thread(replace(config, port=first.state.config.port))
    try:
        assert second.state.bus.start_position("/data/ChangeEvents", purged) is None
        connect(auth_config(second)).Account.create({"Name": "Fresh"})
        assert second.state.bus.latest("cdc") == purged + 1
    finally:
        second.stop()


def test_sfe_sim_serve_fault_and_load(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    env = {**os.environ, "SFE_STATE_DIR": str(tmp_path), "SFE_SIM_PORT": str(port),
           "SFE_SF_LOGIN_URL": f"https://127.0.0.1:{port}", "SFE_SF_CLIENT_SECRET": "sfe-local-secret",
           "SFE_SF_PASSWORD": "sfe-local-password", "SFE_SF_CA_BUNDLE": str(tmp_path / "simulator" / "ca.pem")}  # fmt: skip
    sfe = [sys.executable, "-m", "sfe.cli"]
    server = subprocess.Popen([*sfe, "sim", "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline() for _ in range(2)]
        assert banner[1].startswith("CA certificate: ") and banner[1].strip().endswith("ca.pem")
        loaded = subprocess.run([*sfe, "sim", "load", "--leads", "30", "--opportunities", "8", "--accounts", "5", "--seed", "3"],
                                env=env, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        counts = json.loads(loaded.stdout)
        assert counts["leads"] == 30 and counts["opportunities"] == 8 and counts["accounts"] == 5
        armed = subprocess.run([*sfe, "sim", "fault", "fail_next", "--count", "2"], env=env,
                               capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
        assert json.loads(armed.stdout) == {"fail_next": 2, "status": 503}
        ca = str(tmp_path / "simulator" / "ca.pem")
        status = requests.get(f"https://127.0.0.1:{port}/_sim/status", verify=ca, timeout=10).json()
        assert status["records"]["Lead"] == 30
        assert status["records"]["Contact"] >= 5
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_workload_is_deterministic() -> None:
    import random

    from simulator.load import accounts, leads

    assert leads(random.Random(5), 20) == leads(random.Random(5), 20)
    assert accounts(random.Random(5), 5) != accounts(random.Random(6), 5)
    churny = [
        a for a in accounts(random.Random(1), 200) if a["Product_Usage_Trend__c"] == "Declining"
    ]
    assert all(a["Usage_Score__c"] <= 60 for a in churny)
