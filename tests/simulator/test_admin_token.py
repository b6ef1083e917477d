"""The admin endpoint /_sim: a bearer token when one is set; loopback only without one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import requests

from simulator.app import start_in_thread
from simulator.config import SimConfig, is_loopback


def test_without_a_token_the_simulator_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    exposed = SimConfig(state_dir=tmp_path, host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="SFE_SIM_ADMIN_TOKEN"):
        start_in_thread(exposed)
    replace(exposed, admin_token="a-token").check_exposure()  # allowed with a token
    SimConfig(state_dir=tmp_path).check_exposure()  # loopback: allowed without one
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "10.0.0.5")] == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_with_a_token_the_admin_endpoint_needs_it(tmp_path: Path) -> None:
    running = start_in_thread(SimConfig(state_dir=tmp_path, port=0, admin_token="s3cret-token"))
    try:
        base = running.state.config.base_url
        ca = str(running.state.tls_files.ca_cert)
        body = {"action": "latency", "ms": 0}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = requests.post(
                f"{base}/_sim/faults", json=body, headers=headers, verify=ca, timeout=10
            )
            assert refused.status_code == 401
            assert (
                requests.get(
                    f"{base}/_sim/status", headers=headers, verify=ca, timeout=10
                ).status_code
                == 401
            )
        good = {"Authorization": "Bearer s3cret-token"}
        assert (
            requests.post(
                f"{base}/_sim/faults", json=body, headers=good, verify=ca, timeout=10
            ).status_code
            == 200
        )
        status = requests.get(f"{base}/_sim/status", headers=good, verify=ca, timeout=10)
        assert status.status_code == 200 and "api_usage" in status.json()
    finally:
        running.stop()
