"""A real simulator per test module, served over HTTPS on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from simulator.http.admin import apply_fault
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect, http_session

USERNAME = "integration@sfe.local"
PASSWORD = "sfe-local-password"
CLIENT_ID = "sfe-local-client"
CLIENT_SECRET = "sfe-local-secret"


def sim_config(tmp: Path, **overrides: Any) -> SimConfig:
    return replace(SimConfig(state_dir=tmp, port=0, long_poll_seconds=5.0), **overrides)


@pytest.fixture(scope="module")
def start_sim(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningSimulator]]:
    started: list[RunningSimulator] = []

    def start(**overrides: Any) -> RunningSimulator:
        running = start_in_thread(sim_config(tmp_path_factory.mktemp("sim"), **overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def sim(start_sim: Callable[..., RunningSimulator]) -> RunningSimulator:
    return start_sim()


def auth_config(sim: RunningSimulator, **overrides: Any) -> SalesforceAuthConfig:
    base = SalesforceAuthConfig(
        login_url=sim.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        username=USERNAME,
        password=PASSWORD,
        ca_bundle=sim.state.tls_files.ca_cert,
        call_options_client="sfe-pipeline",
    )
    return replace(base, **overrides)


@pytest.fixture(scope="module")
def sf(sim: RunningSimulator) -> Salesforce:
    """The project's simple-salesforce client, logged in with the password flow."""
    return connect(auth_config(sim))


def session_for(sim: RunningSimulator) -> requests.Session:
    return http_session(auth_config(sim))


def fault(sim: RunningSimulator, **body: Any) -> Any:
    """Arm a fault on the simulator's own loop."""
    return sim.call(apply_fault, sim.state, body)


def login_domain(sim: RunningSimulator) -> str:
    """The ``domain`` that makes simple-salesforce's own login code reach the simulator."""
    return sim.url.removeprefix("https://") + "/login"
